//! AWS's Query protocol, shared by the STS (`sts.rs`) and IAM (`iam.rs`)
//! APIs: form-encoded parameters in, XML out.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use keywarden_core::ids::truncate_for_message;
use keywarden_core::model::Tag;

use crate::error::ApiError;

/// The form content type the Query protocol uses.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// The most parameters one request may carry (a policy with all its
/// members is a single parameter; lists of tags are at most 50 pairs).
const MAX_PARAMS: usize = 512;

/// A Query protocol client error with AWS's code (400).
pub fn query_error(code: &'static str, message: String) -> ApiError {
    ApiError::Query { code, message }
}

/// The parameters of one request: every name at most once.
#[derive(Debug)]
pub struct Params {
    map: BTreeMap<String, String>,
}

impl Params {
    /// Parses a form body; a repeated parameter is `InvalidParameterValue`.
    pub fn parse(body: &[u8]) -> Result<Params, ApiError> {
        let mut map = BTreeMap::new();
        for (name, value) in form_urlencoded::parse(body) {
            if map.len() >= MAX_PARAMS {
                return Err(query_error(
                    "InvalidParameterValue",
                    format!("A request may carry at most {MAX_PARAMS} parameters"),
                ));
            }
            if map.insert(name.to_string(), value.into_owned()).is_some() {
                return Err(query_error(
                    "InvalidParameterValue",
                    format!("{} is given more than once", truncate_for_message(&name)),
                ));
            }
        }
        Ok(Params { map })
    }

    /// The `Action`; `MissingAction` without one.
    pub fn action(&self) -> Result<&str, ApiError> {
        self.get("Action")
            .ok_or_else(|| query_error("MissingAction", "Missing Action parameter".to_owned()))
    }

    /// Checks `Version` (when given) against the API's.
    pub fn check_version(&self, version: &str) -> Result<(), ApiError> {
        match self.get("Version") {
            Some(v) if v != version => Err(query_error(
                "InvalidAction",
                format!(
                    "Could not find operation {} for version {}",
                    truncate_for_message(self.get("Action").unwrap_or("")),
                    truncate_for_message(v)
                ),
            )),
            _ => Ok(()),
        }
    }

    /// A parameter, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// A required parameter; AWS's `ValidationError` without it.
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name).ok_or_else(|| {
            let member = member_name(name);
            query_error(
                "ValidationError",
                format!(
                    "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
                ),
            )
        })
    }

    /// An integer parameter, if given.
    pub fn integer(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    query_error(
                        "ValidationError",
                        format!(
                            "1 validation error detected: Value '{}' at '{name}' is not a valid integer",
                            truncate_for_message(v)
                        ),
                    )
                })
            })
            .transpose()
    }

    /// A boolean parameter, if given: `true` or `false` (as the SDKs send
    /// them), else `ValidationError`.
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(query_error(
                "ValidationError",
                format!(
                    "1 validation error detected: Value '{}' at '{}' is not a valid boolean",
                    truncate_for_message(v),
                    member_name(name)
                ),
            )),
        }
    }

    /// An enumerated parameter, if given: one of `allowed`, else
    /// `ValidationError` naming the allowed values, as IAM's does.
    pub fn one_of(&self, name: &str, allowed: &[&str]) -> Result<Option<&str>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if allowed.contains(&v) => Ok(Some(v)),
            Some(v) => Err(query_error(
                "ValidationError",
                format!(
                    "1 validation error detected: Value '{}' at '{}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                    truncate_for_message(v),
                    member_name(name),
                    allowed.join(", ")
                ),
            )),
        }
    }

    /// The list `<name>.member.N` of strings, in order.
    pub fn list(&self, name: &str) -> Vec<String> {
        (1..)
            .map_while(|i| self.get(&format!("{name}.member.{i}")).map(str::to_owned))
            .collect()
    }

    /// The tag list `<name>.member.N.Key` / `.Value`, in order.
    pub fn tags(&self, name: &str) -> Result<Vec<Tag>, ApiError> {
        let mut tags = Vec::new();
        for i in 1.. {
            let key = self.get(&format!("{name}.member.{i}.Key"));
            let value = self.get(&format!("{name}.member.{i}.Value"));
            match (key, value) {
                (None, None) => break,
                (Some(k), v) => tags.push(Tag {
                    key: k.to_owned(),
                    value: v.unwrap_or("").to_owned(),
                }),
                (None, Some(_)) => {
                    return Err(query_error(
                        "ValidationError",
                        format!("1 validation error detected: Value null at '{name}.{i}.member.key' failed to satisfy constraint: Member must not be null"),
                    ))
                }
            }
        }
        Ok(tags)
    }
}

/// Escapes text for an XML element. Characters XML 1.0 cannot carry at
/// all, not even as character references (the C0 controls other than tab,
/// line feed and carriage return, U+FFFE, U+FFFF), become U+FFFD: they
/// reach messages that quote what a client sent (a policy's `Sid` with a
/// `\u0000` escape), and one of them would make the whole answer
/// unparseable (<https://www.w3.org/TR/xml/#charsets>).
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// An XML answer under construction: `<{Action}Response>`,
/// `<{Action}Result>`, then the members, then the request id.
pub struct XmlAnswer {
    out: String,
    action: String,
}

impl XmlAnswer {
    /// Starts the answer to `action` in the namespace `xmlns`.
    pub fn new(action: &str, xmlns: &str) -> XmlAnswer {
        let mut out = String::with_capacity(512);
        let _ = write!(
            out,
            "<{action}Response xmlns=\"{xmlns}\">\n<{action}Result>\n"
        );
        XmlAnswer {
            out,
            action: action.to_owned(),
        }
    }

    /// An answer with no result element (actions that return nothing).
    pub fn empty(action: &str, xmlns: &str, request_id: &str) -> Vec<u8> {
        format!(
            "<{action}Response xmlns=\"{xmlns}\">\n<ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata>\n</{action}Response>\n",
            xml_escape(request_id)
        )
        .into_bytes()
    }

    /// Opens an element.
    pub fn open(&mut self, tag: &str) -> &mut Self {
        let _ = write!(self.out, "<{tag}>");
        self
    }

    /// Closes an element.
    pub fn close(&mut self, tag: &str) -> &mut Self {
        let _ = writeln!(self.out, "</{tag}>");
        self
    }

    /// An element with text.
    pub fn text(&mut self, tag: &str, value: &str) -> &mut Self {
        let _ = writeln!(self.out, "<{tag}>{}</{tag}>", xml_escape(value));
        self
    }

    /// An element with text, when there is some.
    pub fn opt(&mut self, tag: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.text(tag, v);
        }
        self
    }

    /// Finishes with the request id.
    pub fn finish(mut self, request_id: &str) -> Vec<u8> {
        let action = std::mem::take(&mut self.action);
        let _ = write!(
            self.out,
            "</{action}Result>\n<ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata>\n</{action}Response>\n",
            xml_escape(request_id)
        );
        self.out.into_bytes()
    }
}

/// Percent-encodes a policy document as IAM returns documents (every byte
/// but the unreserved ones), which the AWS SDKs and the CLI decode.
pub fn policy_encode(document: &str) -> String {
    percent_encoding::utf8_percent_encode(document, ENCODE_SET).to_string()
}

const ENCODE_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A parameter as validation messages name it: `UserName` -> `userName`.
fn member_name(name: &str) -> String {
    let mut member = name.to_owned();
    if let Some(first) = member.get_mut(0..1) {
        first.make_ascii_lowercase();
    }
    member
}

/// An instant as IAM writes dates (ISO 8601, UTC, seconds).
pub fn iso_date(millis: i64) -> String {
    keywarden_core::clock::iso8601(keywarden_core::clock::UnixMillis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escape_leaves_no_character_xml_cannot_carry() {
        assert_eq!(xml_escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(xml_escape("tab\tlf\ncr\r"), "tab\tlf\ncr\r");
        assert_eq!(
            xml_escape("nul\u{0}bel\u{7}esc\u{1b}us\u{1f}\u{fffe}\u{ffff}"),
            "nul\u{fffd}bel\u{fffd}esc\u{fffd}us\u{fffd}\u{fffd}\u{fffd}"
        );
        assert_eq!(xml_escape("é€\u{10000}"), "é€\u{10000}");
    }

    #[test]
    fn params_refuse_repeats_and_read_lists() {
        let p = Params::parse(
            b"Action=X&Tags.member.1.Key=a&Tags.member.1.Value=b&Tags.member.2.Key=c",
        )
        .unwrap();
        assert_eq!(p.action().unwrap(), "X");
        let tags = p.tags("Tags").unwrap();
        assert_eq!(tags.len(), 2);
        assert_eq!(tags[1].value, "");
        assert!(Params::parse(b"Action=X&Action=Y").is_err());
        assert!(p.required("UserName").is_err());
    }

    #[test]
    fn booleans_and_enums_are_checked() {
        let p = Params::parse(b"Action=X&OnlyAttached=true&Off=false&Bad=yes&Scope=Local").unwrap();
        assert_eq!(p.boolean("OnlyAttached").unwrap(), Some(true));
        assert_eq!(p.boolean("Off").unwrap(), Some(false));
        assert_eq!(p.boolean("Missing").unwrap(), None);
        assert!(p.boolean("Bad").is_err());
        let scopes = ["All", "AWS", "Local"];
        assert_eq!(p.one_of("Scope", &scopes).unwrap(), Some("Local"));
        assert_eq!(p.one_of("Missing", &scopes).unwrap(), None);
        assert!(p.one_of("Scope", &["All", "AWS"]).is_err());
    }

    #[test]
    fn documents_and_dates_render_as_iam_does() {
        assert_eq!(policy_encode("{\"a\": 1}"), "%7B%22a%22%3A%201%7D");
        assert_eq!(iso_date(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_date(1_700_000_000_123), "2023-11-14T22:13:20Z");
    }
}

//! Wire shapes of the tag operations: TagResource, UntagResource,
//! ListResourceTags.

use keywarden_core::{Caller, Kms};
use serde::{Deserialize, Serialize};

use super::{ListIn, EMPTY};
use crate::error::ApiError;
use crate::wire::{decode, encode, key_ref, limit, marker, required, tags, WireTag};

pub(super) async fn tag_resource(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        key_id: Option<String>,
        tags: Option<Vec<WireTag>>,
    }
    let req: In = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let tags = tags(Some(required(req.tags, "tags")?))?;
    kms.tag_resource(caller, &key, &tags).await?;
    Ok(EMPTY.to_vec())
}

pub(super) async fn untag_resource(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        key_id: Option<String>,
        tag_keys: Option<Vec<String>>,
    }
    let req: In = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let keys = required(req.tag_keys, "tagKeys")?;
    kms.untag_resource(caller, &key, &keys).await?;
    Ok(EMPTY.to_vec())
}

/// AWS's `ListResourceTagsResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListResourceTagsOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
    tags: Vec<WireTag>,
    truncated: bool,
}

pub(super) async fn list_resource_tags(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let req: ListIn = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let page = kms
        .list_resource_tags(
            caller,
            &key,
            limit(req.limit)?,
            marker(req.marker.as_ref())?,
        )
        .await?;
    Ok(encode(&ListResourceTagsOut {
        tags: page.items.iter().map(WireTag::from).collect(),
        truncated: page.next_marker.is_some(),
        next_marker: page.next_marker,
    }))
}

//! The connection to the token: the module's context, the token's slot and a
//! bounded pool of logged-in sessions, rebuilt after the token was lost.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::MechanismType;
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use keywarden_core::protector::ProtectorError;

use crate::config::Pkcs11Config;

/// How long a caller waits for a free session before giving up.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// How a PKCS#11 failure is handled.
pub(crate) enum Failure {
    /// The token, the session or the login is gone: drop the pool and
    /// reconnect on the next call.
    Connection(ProtectorError),
    /// The operation failed on a working connection.
    Operation(ProtectorError),
}

/// Whether `rv` means the session or the token is unusable (as opposed to
/// this one operation having failed).
fn is_connection_error(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::SessionCount
            | RvError::DeviceRemoved
            | RvError::DeviceError
            | RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::UserNotLoggedIn
            | RvError::SlotIdInvalid
            | RvError::CryptokiNotInitialized
    )
}

/// Classifies a PKCS#11 error of the operation `what`. Messages carry the
/// return value's name at most: never a PIN, a label or key bytes.
pub(crate) fn classify(e: &CkError, what: &'static str) -> Failure {
    match e {
        CkError::Pkcs11(rv, _) if is_connection_error(*rv) => {
            tracing::warn!(operation = what, rv = ?rv, "pkcs11 token lost; reconnecting");
            Failure::Connection(ProtectorError::Unavailable(format!(
                "pkcs11 token unreachable ({rv:?})"
            )))
        }
        CkError::Pkcs11(rv, _) => {
            tracing::warn!(operation = what, rv = ?rv, "pkcs11 operation failed");
            Failure::Operation(ProtectorError::Crypto(what))
        }
        CkError::LibraryLoading(_) | CkError::NullFunctionPointer | CkError::MissingSymbol(_) => {
            tracing::warn!(operation = what, "pkcs11 module unusable");
            Failure::Connection(ProtectorError::Unavailable("pkcs11 module unusable".into()))
        }
        _ => {
            tracing::warn!(operation = what, "pkcs11 binding failed");
            Failure::Operation(ProtectorError::Crypto(what))
        }
    }
}

/// One context per module and process: a module can be initialized once
/// per process, and finalizing it would pull the token from under every
/// other protector using the same module. Contexts are never finalized.
fn module_context(module: &Path) -> Result<Pkcs11, CkError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut contexts = lock(CONTEXTS.get_or_init(Default::default));
    if let Some(ctx) = contexts.get(module) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(module)?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Someone else in this process (a test, another library) got there first.
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(e),
    }
    contexts.insert(module.to_path_buf(), ctx.clone());
    Ok(ctx)
}

/// Finalizes and initializes the module again, so it rediscovers its
/// tokens: some modules (SoftHSM2) only look for tokens at `C_Initialize`,
/// and one that vanished and came back stays invisible until then. Every
/// session of the module in this process is closed by it; the other
/// protectors on the same module see a session error, drop their pools and
/// reconnect.
fn reinitialize_module(module: &Path) -> Result<(), CkError> {
    static CONTEXTS_LOCK: Mutex<()> = Mutex::new(());
    let _one_at_a_time = lock(&CONTEXTS_LOCK);
    let ctx = module_context(module)?;
    // Not initialized any more is fine: we are about to initialize.
    let _ = ctx.clone().finalize();
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(()),
        Err(e) => Err(e),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not turn every later call into a panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A live connection: the token's slot and the sessions not in use.
struct Live {
    ctx: Pkcs11,
    slot: Slot,
    idle: Vec<Session>,
    /// Sessions of this connection open now (idle or leased).
    open: usize,
    /// What the token's `C_GetMechanismList` answered at connection.
    mechanisms: Arc<[MechanismType]>,
}

struct State {
    live: Option<Live>,
    /// Bumped on every (re)connection: object handles and leased sessions
    /// of an older generation are stale.
    generation: u64,
    /// When the last connection attempt failed; cleared by a success.
    last_failure: Option<Instant>,
    /// Set when the token refused the PIN: retrying could lock the token,
    /// so the protector stays unavailable until it is reconfigured.
    refused: bool,
}

/// A session taken from the pool; give it back with [`Connection::release`].
pub(crate) struct Lease {
    pub(crate) session: Session,
    pub(crate) generation: u64,
}

/// The pool and its connection state.
pub(crate) struct Connection {
    config: Pkcs11Config,
    reconnect_interval: Duration,
    state: Mutex<State>,
    freed: Condvar,
}

impl Connection {
    pub(crate) fn new(config: Pkcs11Config, reconnect_interval: Duration) -> Self {
        Connection {
            config,
            reconnect_interval,
            state: Mutex::new(State {
                live: None,
                generation: 0,
                last_failure: None,
                refused: false,
            }),
            freed: Condvar::new(),
        }
    }

    pub(crate) fn config(&self) -> &Pkcs11Config {
        &self.config
    }

    /// Whether the token refused the PIN (never retried since).
    pub(crate) fn login_refused(&self) -> bool {
        lock(&self.state).refused
    }

    /// Connects now, whatever the rate limit says (at construction).
    pub(crate) fn connect_now(&self) -> Result<(), ProtectorError> {
        let mut state = lock(&self.state);
        self.connect(&mut state)
    }

    /// Whether the token is connected; tries to connect (at most once per
    /// reconnect interval) if it is not.
    pub(crate) fn available(&self) -> bool {
        let mut state = lock(&self.state);
        if state.live.is_some() {
            return true;
        }
        self.connect_rate_limited(&mut state).is_ok()
    }

    fn connect_rate_limited(&self, state: &mut State) -> Result<(), ProtectorError> {
        if state.refused {
            return Err(ProtectorError::Unavailable(
                "pkcs11 login refused; check the PIN".into(),
            ));
        }
        // Only a failed attempt delays the next one: a pool dropped after a
        // session error is rebuilt at once.
        if let Some(at) = state.last_failure {
            if at.elapsed() < self.reconnect_interval {
                return Err(ProtectorError::Unavailable(
                    "pkcs11 token unreachable; retrying shortly".into(),
                ));
            }
        }
        self.connect(state)
    }

    /// Loads the module, finds the token and opens one logged-in session.
    /// Holds the state lock throughout, so callers queue behind one attempt.
    fn connect(&self, state: &mut State) -> Result<(), ProtectorError> {
        state.live = None;
        state.last_failure = Some(Instant::now());
        let ctx = module_context(&self.config.module).map_err(|e| {
            classify(&e, "pkcs11 load module");
            ProtectorError::Unavailable("pkcs11 module could not be loaded".into())
        })?;
        let slot = match find_slot(&ctx, &self.config.token_label) {
            Ok(slot) => slot,
            // The token was there before (a generation was connected) and
            // is gone: let the module look for its tokens again.
            Err(_) if state.generation > 0 => {
                tracing::warn!("pkcs11 token lost; re-initializing the module to find it again");
                reinitialize_module(&self.config.module).map_err(|e| {
                    classify(&e, "pkcs11 re-initialize module");
                    ProtectorError::Unavailable("pkcs11 module could not be re-initialized".into())
                })?;
                find_slot(&ctx, &self.config.token_label)?
            }
            Err(e) => return Err(e),
        };
        let session = self.open_session(&ctx, slot).inspect_err(|e| {
            if matches!(e, ProtectorError::Unavailable(m) if m.starts_with("pkcs11 login refused"))
            {
                state.refused = true;
            }
        })?;
        let mechanisms: Arc<[MechanismType]> = ctx
            .get_mechanism_list(slot)
            .map_err(|e| unavailable(&e, "pkcs11 mechanism list"))?
            .into();
        tracing::debug!(count = mechanisms.len(), "pkcs11 token mechanisms listed");
        state.generation += 1;
        state.last_failure = None;
        state.live = Some(Live {
            ctx,
            slot,
            idle: vec![session],
            open: 1,
            mechanisms,
        });
        tracing::info!("pkcs11 token connected");
        Ok(())
    }

    /// A new read-write session, logged in as the user. The login is the
    /// application's, shared by all its sessions: a second login is a no-op.
    fn open_session(&self, ctx: &Pkcs11, slot: Slot) -> Result<Session, ProtectorError> {
        let session = ctx
            .open_rw_session(slot)
            .map_err(|e| unavailable(&e, "pkcs11 open session"))?;
        let pin = AuthPin::new(self.config.pin.as_str().into());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(CkError::Pkcs11(
                rv @ (RvError::PinIncorrect
                | RvError::PinLocked
                | RvError::PinExpired
                | RvError::PinInvalid
                | RvError::PinLenRange),
                _,
            )) => {
                tracing::error!(rv = ?rv, "pkcs11 token refused the user PIN; not retrying");
                Err(ProtectorError::Unavailable(
                    "pkcs11 login refused; check the PIN".into(),
                ))
            }
            Err(e) => Err(unavailable(&e, "pkcs11 login")),
        }
    }

    /// The mechanisms the connected token lists (`C_GetMechanismList`, read
    /// once per connection), connecting first if needed.
    pub(crate) fn mechanisms(&self) -> Result<Arc<[MechanismType]>, ProtectorError> {
        let mut state = lock(&self.state);
        if state.live.is_none() {
            self.connect_rate_limited(&mut state)?;
        }
        state
            .live
            .as_ref()
            .map(|live| Arc::clone(&live.mechanisms))
            .ok_or_else(|| ProtectorError::Unavailable("pkcs11 token unreachable".into()))
    }

    /// A session from the pool, connecting first if needed; waits while all
    /// `sessions` are in use.
    pub(crate) fn acquire(&self) -> Result<Lease, ProtectorError> {
        let max = self.config.sessions.max(1);
        let deadline = Instant::now() + POOL_WAIT;
        let mut state = lock(&self.state);
        loop {
            if state.live.is_none() {
                self.connect_rate_limited(&mut state)?;
            }
            let generation = state.generation;
            let Some(live) = state.live.as_mut() else {
                continue;
            };
            if let Some(session) = live.idle.pop() {
                return Ok(Lease {
                    session,
                    generation,
                });
            }
            if live.open < max {
                live.open += 1;
                let (ctx, slot) = (live.ctx.clone(), live.slot);
                drop(state);
                return match self.open_session(&ctx, slot) {
                    Ok(session) => Ok(Lease {
                        session,
                        generation,
                    }),
                    Err(e) => {
                        self.forget(generation, true);
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ProtectorError::Unavailable(
                    "pkcs11 session pool exhausted".into(),
                ));
            }
            state = self
                .freed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Gives a session back after a successful call (or one that failed
    /// cleanly, such as a tag mismatch).
    pub(crate) fn release(&self, lease: Lease) {
        let mut state = lock(&self.state);
        if state.generation == lease.generation {
            if let Some(live) = state.live.as_mut() {
                live.idle.push(lease.session);
            }
        }
        drop(state);
        self.freed.notify_one();
    }

    /// Closes a session after a failure: the token is gone (`lost`: drop the
    /// whole pool, reconnect on the next call) or the session may be left
    /// mid-operation (close just this one).
    pub(crate) fn discard(&self, lease: Lease, lost: bool) {
        drop(lease.session);
        self.forget(lease.generation, lost);
    }

    fn forget(&self, generation: u64, lost: bool) {
        let mut state = lock(&self.state);
        if state.generation == generation {
            if lost {
                // Dropping the sessions closes them; errors are ignored.
                state.live = None;
            } else if let Some(live) = state.live.as_mut() {
                live.open = live.open.saturating_sub(1);
            }
        }
        drop(state);
        self.freed.notify_all();
    }
}

fn unavailable(e: &CkError, what: &'static str) -> ProtectorError {
    match classify(e, what) {
        Failure::Connection(e) => e,
        Failure::Operation(_) => ProtectorError::Unavailable(format!("{what} failed")),
    }
}

fn find_slot(ctx: &Pkcs11, label: &str) -> Result<Slot, ProtectorError> {
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| unavailable(&e, "pkcs11 list slots"))?;
    for slot in slots {
        match ctx.get_token_info(slot) {
            Ok(info) if info.label().trim_end() == label.trim_end() => return Ok(slot),
            Ok(_) => {}
            Err(e) => {
                classify(&e, "pkcs11 token info");
            }
        }
    }
    tracing::warn!("pkcs11 token with the configured label not found");
    Err(ProtectorError::Unavailable("pkcs11 token not found".into()))
}

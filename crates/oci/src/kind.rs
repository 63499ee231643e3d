/// What class of failure an error is. Servers map it to status codes, controllers
/// to retry or give up, the CLI to exit codes; every library error has a `kind()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The named thing does not exist.
    NotFound,
    /// The request clashes with the current state (already exists, wrong state).
    Conflict,
    /// The input is malformed or not allowed; retrying the same input fails again.
    Invalid,
    /// A resource is temporarily missing; retrying later may succeed.
    Unavailable,
    /// The caller lacks the right to do this.
    Forbidden,
    /// A bug or an unexpected failure of the machine (IO, the kernel).
    Internal,
}

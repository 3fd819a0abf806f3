//! Domain types: ids, value objects that can only be built valid, entities and claims.

mod claims;
mod email;
mod ids;
mod password;
mod session;
pub mod text;
mod user;

pub use claims::{AccessClaims, TokenRejection};
pub use email::{Email, EmailError};
pub use ids::{SessionId, UserId};
pub use password::{Password, PasswordError, PasswordHash, PasswordPolicy};
pub use session::{RefreshToken, Session, TokenHash, TokenPair};
pub use text::{DisplayName, DisplayNameError};
pub use user::User;

//! Messages of the account topic.

use crate::messages::{AccountSnapshot, AccountUpdated};
use actix::prelude::*;

/// The last snapshot, `None` before the first successful read.
#[derive(Message)]
#[rtype(result = "Option<AccountSnapshot>")]
pub struct GetAccount;

/// Registers a receiver of [`AccountUpdated`]; it gets the last snapshot at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddAccountListener(pub Recipient<AccountUpdated>);

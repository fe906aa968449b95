//! Sans-IO SMTP for Sluice: parsing commands, writing replies, the inbound
//! session state machine and PROXY protocol headers. No sockets, no runtime:
//! bytes go in, events and bytes come out.
#![forbid(unsafe_code)]

pub mod address;
pub mod body;
pub mod client;
pub mod command;
pub mod proxy;
pub mod reply;
pub mod server;
pub mod wire;

pub use command::{Command, MailFrom, RcptTo};
pub use reply::Reply;
pub use server::{Envelope, Event, ServerConfig, ServerSession};

//! An example plugin in safe Rust (`sluice-plugin-sdk`):
//! - rejects recipients at `@blocked.example` with 550;
//! - answers RCPT for `slow@…` from a timer 50 ms later (the asynchronous hand-off);
//! - stamps `X-Rust-Plugin: yes` into every message;
//! - counts messages across workers with an atomic;
//! - accepts AUTH for `rust`/`plugin` only.

use sluice_plugin_sdk::{export_plugin, Connection, Context, Flow, Level, Message, Plugin};
use std::sync::atomic::{AtomicU64, Ordering};

struct Filter {
    messages: AtomicU64,
}

impl Plugin for Filter {
    fn rcpt_to(&self, ctx: &Context, conn: &Connection, recipient: Option<&str>) -> Flow {
        match recipient {
            Some(r) if r.ends_with("@blocked.example") => {
                conn.respond(550, "5.1.1 blocked by the Rust example");
                Flow::Next
            }
            Some(r) if r.starts_with("slow@") => {
                let handle = conn.handle();
                ctx.after(0.05, move || {
                    handle.respond(250, "2.1.5 answered later by Rust");
                    handle.resume();
                });
                Flow::Hold
            }
            _ => Flow::Next,
        }
    }

    fn authenticate(&self, _ctx: &Context, conn: &Connection, login: &[u8], password: &[u8]) -> Flow {
        conn.set_authenticated(login == b"rust" && password == b"plugin");
        Flow::Next
    }

    fn message(&self, ctx: &Context, _conn: &Connection, message: &Message) -> Flow {
        let n = self.messages.fetch_add(1, Ordering::Relaxed) + 1;
        message.set_mime(&format!("X-Rust-Plugin: yes\r\n{}", message.mime().unwrap_or_default()));
        ctx.log(Level::Info, &format!("rust example stamped message {n}"));
        Flow::Next
    }
}

export_plugin!(Filter {
    messages: AtomicU64::new(0)
});

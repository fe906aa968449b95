//! `MQ_Message`: one recipient's JSON while plugins look at it. Getters hand
//! out NUL-terminated copies cached here, valid until the hand-off ends or the
//! next setter on the same message.

use crate::connection::MqAddress;
use serde_json::{Map, Value};
use std::ffi::CString;

/// What an `MQ_Message*` points to.
pub struct MqMessage {
    pub(crate) json: Map<String, Value>,
    pub(crate) local: bool,
    pub(crate) envelope: Option<MqAddress>,
    pub(crate) recipient: Option<MqAddress>,
    pub(crate) mime: Option<CString>,
}

impl MqMessage {
    /// A message for the inbound hook (setters change what is queued).
    pub fn new(json: Map<String, Value>) -> MqMessage {
        MqMessage {
            json,
            local: false,
            envelope: None,
            recipient: None,
            mime: None,
        }
    }

    /// The JSON as the plugins left it, and whether it goes to the local queue.
    pub fn into_parts(self) -> (Map<String, Value>, bool) {
        (self.json, self.local)
    }

    /// The address in property `key`: None when absent, `<>` when "".
    pub(crate) fn address(&mut self, key: &str) -> Option<&mut MqAddress> {
        let value = self.json.get(key)?.as_str()?.to_string();
        let slot = if key == "envelope" {
            &mut self.envelope
        } else {
            &mut self.recipient
        };
        Some(slot.insert(MqAddress::new(&value)))
    }

    pub(crate) fn set_string(&mut self, key: &str, value: String) {
        self.json.insert(key.to_string(), Value::String(value));
        match key {
            "envelope" => self.envelope = None,
            "recipient" => self.recipient = None,
            _ => self.mime = None,
        }
    }

    pub(crate) fn mime(&mut self) -> Option<&CString> {
        let text = self.json.get("mime")?.as_str()?;
        // A C string ends at the first NUL; MIME has none in practice.
        let end = text.find('\0').unwrap_or(text.len());
        Some(self.mime.insert(CString::new(&text[..end]).unwrap_or_default()))
    }
}

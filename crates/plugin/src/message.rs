//! `MQ_Message`: one recipient's JSON while plugins look at it. Getters hand
//! out NUL-terminated copies cached here, valid until the hand-off ends or the
//! next setter on the same message.

use crate::connection::MqAddress;
use crate::json::json_c;
use serde_json::{Map, Value};
use std::ffi::{c_int, c_void, CStr, CString};

/// What an `MQ_Message*` points to.
pub struct MqMessage {
    pub(crate) json: Map<String, Value>,
    pub(crate) local: bool,
    pub(crate) envelope: Option<MqAddress>,
    pub(crate) recipient: Option<MqAddress>,
    pub(crate) mime: Option<CString>,
    /// The json-c object MQ_json handed out (NULL until asked for).
    json_c: *mut c_void,
    /// Outbound (mq_smtp_out_*): setters change only the wire values below;
    /// the stored JSON keeps its original values.
    outbound: Option<Wire>,
    /// The plugin whose turn it is (set by the hook runner), for warnings.
    pub(crate) plugin: String,
}

/// What an outbound attempt puts on the wire, as plugins set it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Wire {
    pub envelope: Option<String>,
    pub recipient: Option<String>,
    pub mime: Option<String>,
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
            json_c: std::ptr::null_mut(),
            outbound: None,
            plugin: String::new(),
        }
    }

    /// A message for the outbound hooks: setters change the wire values only.
    pub fn outbound(json: Map<String, Value>) -> MqMessage {
        let mut m = MqMessage::new(json);
        m.outbound = Some(Wire::default());
        m
    }

    /// Outbound: what the plugins set for the wire (None where they set nothing).
    pub fn wire(&self) -> Option<&Wire> {
        self.outbound.as_ref()
    }

    pub(crate) fn is_outbound(&self) -> bool {
        self.outbound.is_some()
    }

    /// The JSON as the plugins left it, and whether it goes to the local queue.
    pub fn into_parts(mut self) -> (Map<String, Value>, bool) {
        self.sync_json();
        (std::mem::take(&mut self.json), self.local)
    }

    /// The json-c object of this message, built on first use; NULL without json-c.
    pub(crate) fn json_object(&mut self) -> *mut c_void {
        if self.json_c.is_null() {
            if json_c().is_none() {
                crate::json::report_missing(&self.plugin);
            }
            if let Some(j) = json_c() {
                let text = CString::new(Value::Object(self.json.clone()).to_string()).unwrap_or_default();
                // SAFETY: json_tokener_parse reads a NUL-terminated string and
                // returns a new object (or NULL) that we own.
                self.json_c = unsafe { (j.parse)(text.as_ptr()) };
            }
        }
        self.json_c
    }

    /// Reads back what a plugin changed through the json-c object (inbound
    /// only: outbound, the stored JSON keeps its values).
    pub(crate) fn sync_json(&mut self) {
        if self.outbound.is_some() {
            return;
        }
        if self.json_c.is_null() {
            return;
        }
        let Some(j) = json_c() else { return };
        // SAFETY: a live object we own; the string belongs to it and is read now.
        let text = unsafe { (j.to_string)(self.json_c, 0) };
        if text.is_null() {
            return;
        }
        // SAFETY: json-c returns a NUL-terminated string.
        let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(m)) => {
                self.json = m;
                self.envelope = None;
                self.recipient = None;
                self.mime = None;
            }
            _ => {
                tracing::warn!("MQ_json: a plugin made the message something other than a JSON object; change ignored")
            }
        }
    }

    /// The address in property `key` (outbound: the wire value when a plugin
    /// set one): None when absent, `<>` when "".
    pub(crate) fn address(&mut self, key: &str) -> Option<&mut MqAddress> {
        let wire = self.outbound.as_ref().and_then(|w| {
            if key == "envelope" {
                w.envelope.clone()
            } else {
                w.recipient.clone()
            }
        });
        let value = match wire {
            Some(v) => v,
            None => self.json.get(key)?.as_str()?.to_string(),
        };
        let slot = if key == "envelope" {
            &mut self.envelope
        } else {
            &mut self.recipient
        };
        Some(slot.insert(MqAddress::new(&value)))
    }

    pub(crate) fn set_string(&mut self, key: &str, value: String) {
        if let Some(w) = &mut self.outbound {
            match key {
                "envelope" => (w.envelope, self.envelope) = (Some(value), None),
                "recipient" => (w.recipient, self.recipient) = (Some(value), None),
                _ => (w.mime, self.mime) = (Some(value), None),
            }
            return;
        }
        // Keep a json-c object the plugin holds in step with the setter.
        self.sync_json();
        if let Some(j) = (!self.json_c.is_null()).then(json_c).flatten() {
            let k = CString::new(key).unwrap_or_default();
            // SAFETY: json_object_new_string_len copies `len` bytes; object_add
            // takes ownership of the new value and copies the key.
            unsafe {
                let v = (j.new_string_len)(value.as_ptr().cast(), value.len() as c_int);
                (j.object_add)(self.json_c, k.as_ptr(), v);
            }
        }
        self.json.insert(key.to_string(), Value::String(value));
        match key {
            "envelope" => self.envelope = None,
            "recipient" => self.recipient = None,
            _ => self.mime = None,
        }
    }

    /// The MIME; outbound, the one a plugin set, else the inline `mime` of the
    /// JSON (NULL when the message has only a `key`).
    pub(crate) fn mime(&mut self) -> Option<&CString> {
        let wire = self.outbound.as_ref().and_then(|w| w.mime.as_deref());
        let text = match wire {
            Some(t) => t,
            None => self.json.get("mime")?.as_str()?,
        };
        // A C string ends at the first NUL; MIME has none in practice.
        let end = text.find('\0').unwrap_or(text.len());
        Some(self.mime.insert(CString::new(&text[..end]).unwrap_or_default()))
    }
}

impl Drop for MqMessage {
    fn drop(&mut self) {
        // Only a message that handed out a json-c object asks for json-c, so
        // "not loaded" is logged for plugins that call MQ_json, not for all.
        if let Some(j) = (!self.json_c.is_null()).then(json_c).flatten() {
            // SAFETY: the one reference we hold; the plugin's pointer is only
            // valid until the hand-off ended, which it has.
            unsafe { (j.put)(self.json_c) };
        }
    }
}

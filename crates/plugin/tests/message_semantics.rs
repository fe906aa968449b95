//! Inbound vs outbound message semantics of the setters (spec/plugin-api.md),
//! through the exported C functions themselves.

use serde_json::{json, Map, Value};
use sluice_plugin::abi::*;
use sluice_plugin::MqMessage;
use std::ffi::{c_char, CStr};

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn text(p: *const c_char) -> Option<String> {
    // SAFETY: the host returns NULL or a NUL-terminated string valid until the next setter.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

fn set(f: unsafe extern "C" fn(*mut MqMessage, *const c_char, usize), m: &mut MqMessage, v: &str) {
    // SAFETY: a live message and `v.len()` readable bytes.
    unsafe { f(m, v.as_ptr().cast(), v.len()) }
}

#[test]
fn inbound_setters_change_the_json() {
    let mut m = MqMessage::new(obj(
        json!({"envelope": "a@x.y", "recipient": "r@x.y", "mime": "Subject: 1\r\n\r\nx"}),
    ));
    set(MQ_setMime, &mut m, "Subject: 2\r\n\r\ny");
    set(MQ_setEnvelope, &mut m, "b@x.y");
    // SAFETY: live message; strings read before the next setter.
    unsafe {
        assert_eq!(text(MQ_mime(&mut m)).as_deref(), Some("Subject: 2\r\n\r\ny"));
        assert_eq!(text(MQ_email(MQ_envelope(&mut m))).as_deref(), Some("b@x.y"));
        MQ_setLocal(&mut m, true);
        assert!(MQ_local(&mut m));
    }
    let (json, local) = m.into_parts();
    assert!(local);
    assert_eq!(json["mime"], "Subject: 2\r\n\r\ny");
    assert_eq!(json["envelope"], "b@x.y");
}

#[test]
fn outbound_setters_change_the_wire_not_the_stored_json() {
    let original = json!({"envelope": "a@x.y", "recipient": "r@x.y", "mime": "Subject: 1\r\n\r\nx"});
    let mut m = MqMessage::outbound(obj(original.clone()));
    // SAFETY: live message.
    unsafe {
        // Inline MIME: MQ_mime gives it before any plugin set one.
        assert_eq!(text(MQ_mime(&mut m)).as_deref(), Some("Subject: 1\r\n\r\nx"));
    }
    set(MQ_setMime, &mut m, "Subject: wire\r\n\r\nz");
    set(MQ_setRecipient, &mut m, "other@x.y");
    set(MQ_setEnvelope, &mut m, "");
    // SAFETY: live message.
    unsafe {
        assert_eq!(text(MQ_mime(&mut m)).as_deref(), Some("Subject: wire\r\n\r\nz"));
        assert_eq!(text(MQ_email(MQ_recipient(&mut m))).as_deref(), Some("other@x.y"));
        assert!(
            !MQ_envelope(&mut m).is_null() && MQ_email(MQ_envelope(&mut m)).is_null(),
            "<> on the wire"
        );
        MQ_setLocal(&mut m, true); // inbound only: ignored
        assert!(!MQ_local(&mut m));
    }
    let wire = m.wire().cloned().unwrap();
    assert_eq!(wire.mime.as_deref(), Some("Subject: wire\r\n\r\nz"));
    assert_eq!(wire.recipient.as_deref(), Some("other@x.y"));
    assert_eq!(wire.envelope.as_deref(), Some(""));
    let (json, _) = m.into_parts();
    assert_eq!(Value::Object(json), original, "stored JSON keeps its values");
}

#[test]
fn outbound_mime_is_null_until_set_when_the_json_has_only_a_key() {
    let mut m = MqMessage::outbound(obj(json!({"recipient": "r@x.y", "key": "stored-mime-1"})));
    // SAFETY: live message.
    unsafe {
        assert!(MQ_mime(&mut m).is_null());
        assert!(MQ_envelope(&mut m).is_null(), "no envelope property: NULL");
    }
    set(MQ_setMime, &mut m, "Subject: built\r\n\r\nfrom the key");
    // SAFETY: live message.
    unsafe {
        assert_eq!(
            text(MQ_mime(&mut m)).as_deref(),
            Some("Subject: built\r\n\r\nfrom the key")
        )
    };
}

#[test]
fn null_pointers_are_harmless() {
    // SAFETY: NULL is allowed for every handle.
    unsafe {
        assert!(MQ_mime(std::ptr::null_mut()).is_null());
        assert!(MQ_email(std::ptr::null_mut()).is_null());
        assert!(MQ_contextData(std::ptr::null_mut()).is_null());
        assert_eq!(MQ_send(std::ptr::null_mut(), b"x".as_ptr().cast(), 1), 0);
        MQ_continue(std::ptr::null_mut());
        MQ_setMime(std::ptr::null_mut(), std::ptr::null(), 0);
    }
}

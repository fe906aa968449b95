/* Test plugin for the outbound hooks: builds the MIME from a message's `key`
 * in mq_smtp_out_data (the stored JSON keeps no MIME), logs both hooks, and
 * never hands control back for key "hang" (the watchdog's case). */
#include <mailerq.h>
#include <json-c/json.h>
#include <stdio.h>
#include "log_line.h"

MQ_EXPORT int mq_version(void) { return MQ_API_VERSION; }

static const char *property(MQ_Message *message, const char *name) {
    struct json_object *object = MQ_json(message), *value;
    if (object && json_object_object_get_ex(object, name, &value)) return json_object_get_string(value);
    return NULL;
}

MQ_EXPORT bool mq_smtp_out_data(MQ_Context *context, MQ_Connection *connection, MQ_Message *message) {
    char line[512], mime[256];
    const char *key = property(message, "key");
    const char *email = MQ_email(MQ_recipient(message));
    (void)context;
    snprintf(line, sizeof line, "out_data %s fd=%d key=%s mime=%s\n", email ? email : "-",
             MQ_fileDescriptor(connection) >= 0, key ? key : "-", MQ_mime(message) ? "inline" : "NULL");
    log_line(line);
    if (key && strcmp(key, "hang") == 0) return true; /* holds control: the watchdog ends it */
    if (key) {
        int n = snprintf(mime, sizeof mime, "From: plugin@example.net\r\nSubject: built from key %s\r\n\r\nbody for %s\r\n", key, key);
        MQ_setMime(message, mime, (size_t)n);
    }
    /* Hand control back synchronously, inside the hook. */
    MQ_continue(connection);
    return true;
}

MQ_EXPORT bool mq_smtp_out_sent(MQ_Context *context, MQ_Connection *connection, MQ_Message *message) {
    char line[256];
    const char *email = MQ_email(MQ_recipient(message));
    (void)context;
    (void)connection;
    snprintf(line, sizeof line, "out_sent %s\n", email ? email : "-");
    log_line(line);
    return false;
}

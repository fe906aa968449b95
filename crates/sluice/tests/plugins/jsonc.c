/* Test plugin using json-c through MQ_json (linked with -ljson-c). */
#include <mailerq.h>
#include <json-c/json.h>

MQ_EXPORT int mq_version(void) { return MQ_API_VERSION; }

MQ_EXPORT bool mq_smtp_in_message(MQ_Context *context, MQ_Connection *connection, MQ_Message *message) {
    struct json_object *object = MQ_json(message);
    struct json_object *recipient;
    (void)context;
    if (!object) {
        MQ_respond(connection, 451, "4.3.0 MQ_json gave NULL");
        return false;
    }
    if (json_object_object_get_ex(object, "recipient", &recipient))
        json_object_object_add(object, "seen-recipient", json_object_new_string(json_object_get_string(recipient)));
    json_object_object_add(object, "tag", json_object_new_string("from-json-c"));
    /* A setter after MQ_json: both views must agree. */
    MQ_setEnvelope(message, "setter@example.net", 18);
    return false;
}

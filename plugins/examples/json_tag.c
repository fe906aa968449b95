/* Uses json-c through MQ_json: adds a "tags" array to every message's JSON
 * (custom properties are kept and carried into every delivery result).
 * Link with -ljson-c. */
#include <mailerq.h>
#include <json-c/json.h>

MQ_EXPORT int mq_version(void) { return MQ_API_VERSION; }

MQ_EXPORT bool mq_smtp_in_message(MQ_Context *context, MQ_Connection *connection, MQ_Message *message) {
    struct json_object *json = MQ_json(message), *tags;
    (void)context;
    (void)connection;
    if (!json) return false;
    tags = json_object_new_array();
    json_object_array_add(tags, json_object_new_string("example"));
    json_object_object_add(json, "tags", tags); /* read back when the hand-off ends */
    return false;
}

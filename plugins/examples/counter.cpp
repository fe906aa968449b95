// A plugin in C++: counts the messages each worker queued in per-context
// data (no locks: a context belongs to one worker thread), stamps the count
// into each message as a header, and logs the total when the worker stops.
#include <mailerq.h>
#include <string>

namespace {
struct Counter {
    unsigned long messages = 0;
};
}

extern "C" {

MQ_EXPORT int mq_version(void) { return MQ_API_VERSION; }

MQ_EXPORT void mq_context_initialize(MQ_Context *context) { MQ_setContextData(context, new Counter()); }

MQ_EXPORT void mq_context_cleanup(MQ_Context *context) {
    auto *counter = static_cast<Counter *>(MQ_contextData(context));
    std::string text = "counter: this worker queued " + std::to_string(counter->messages) + " messages";
    MQ_log(context, MQ_LOG_INFO, text.c_str());
    delete counter;
}

MQ_EXPORT bool mq_smtp_in_message(MQ_Context *context, MQ_Connection *, MQ_Message *message) {
    auto *counter = static_cast<Counter *>(MQ_contextData(context));
    std::string mime = "X-Worker-Count: " + std::to_string(++counter->messages) + "\r\n";
    if (const char *original = MQ_mime(message)) mime += original;
    MQ_setMime(message, mime.data(), mime.size());
    return false;
}
}

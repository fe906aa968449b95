/* Uses libev through MQ_ev: a repeating ev_timer per worker that logs a
 * heartbeat, the way a plugin would poll a back end. Link with -lev. */
#include <mailerq.h>
#include <ev.h>
#include <stdlib.h>

struct heartbeat {
    ev_timer timer;
    MQ_Context *context;
};

static void beat(struct ev_loop *loop, ev_timer *timer, int revents) {
    struct heartbeat *h = (struct heartbeat *)timer->data;
    (void)loop;
    (void)revents;
    MQ_log(h->context, MQ_LOG_INFO, "libev heartbeat");
}

MQ_EXPORT int mq_version(void) { return MQ_API_VERSION; }

MQ_EXPORT void mq_context_initialize(MQ_Context *context) {
    struct ev_loop *loop = MQ_ev(context);
    struct heartbeat *h;
    if (!loop) return;
    h = (struct heartbeat *)calloc(1, sizeof *h);
    h->context = context;
    ev_timer_init(&h->timer, beat, 0.1, 0.2);
    h->timer.data = h;
    ev_timer_start(loop, &h->timer);
    MQ_setContextData(context, h);
}

MQ_EXPORT void mq_context_cleanup(MQ_Context *context) {
    struct heartbeat *h = (struct heartbeat *)MQ_contextData(context);
    if (!h) return;
    ev_timer_stop(MQ_ev(context), &h->timer);
    free(h);
}

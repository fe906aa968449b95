/* Test plugin using libev through MQ_ev (linked with -lev): an ev_timer and
 * an ev_io on a pipe, both firing on the context's worker thread. */
#define _POSIX_C_SOURCE 200809L
#include <mailerq.h>
#include "log_line.h"
#include <ev.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct worker {
    pthread_t thread;
    struct ev_loop *loop;
    ev_timer timer;
    ev_io io;
    int pipe[2];
};

static void record(const char *what, struct worker *w) {
    char line[128];
    snprintf(line, sizeof line, "%s %s\n", what, pthread_equal(w->thread, pthread_self()) ? "same-thread" : "OTHER-THREAD");
    log_line(line);
}

static void on_timer(struct ev_loop *loop, ev_timer *timer, int revents) {
    struct worker *w = (struct worker *)timer->data;
    (void)loop;
    (void)revents;
    record("libev-timer", w);
    if (write(w->pipe[1], "x", 1) != 1) record("libev-write-failed", w);
}

static void on_readable(struct ev_loop *loop, ev_io *io, int revents) {
    struct worker *w = (struct worker *)io->data;
    char c;
    (void)revents;
    record(read(io->fd, &c, 1) == 1 && c == 'x' ? "libev-io" : "libev-io-WRONG", w);
    ev_io_stop(loop, io);
}

MQ_EXPORT int mq_version(void) { return MQ_API_VERSION; }

MQ_EXPORT void mq_context_initialize(MQ_Context *context) {
    struct worker *w = (struct worker *)calloc(1, sizeof *w);
    w->thread = pthread_self();
    MQ_setContextData(context, w);
    w->loop = MQ_ev(context);
    if (!w->loop || pipe(w->pipe) != 0) {
        record("libev-NULL", w);
        return;
    }
    ev_timer_init(&w->timer, on_timer, 0.1, 0.);
    w->timer.data = w;
    ev_timer_start(w->loop, &w->timer);
    ev_io_init(&w->io, on_readable, w->pipe[0], EV_READ);
    w->io.data = w;
    ev_io_start(w->loop, &w->io);
}

MQ_EXPORT void mq_context_cleanup(MQ_Context *context) {
    struct worker *w = (struct worker *)MQ_contextData(context);
    if (w->loop) {
        ev_timer_stop(w->loop, &w->timer);
        ev_io_stop(w->loop, &w->io);
        close(w->pipe[0]);
        close(w->pipe[1]);
    }
    free(w);
}

/*
 * test_consult_events.c - the live view's stream in a real Redis: a change
 * published while Redis is away is lost, and the hub then owes a resync
 * entry, which it puts into the stream before its next change once Redis
 * takes writes again, so that every live view reloads (consult/events.h).
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "consult/events.h"
#include "consult/order.h"
#include "kv/kv.h"

typedef struct fixture {
    char root[64];
    char sock[128];
    pid_t redis;
    kv *kv;
    events_hub *hub;
} fixture;

static pid_t start_redis(const char *sock)
{
    pid_t pid = fork();

    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);

        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock,
               "--save", "", "--appendonly", "no", (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void stop_redis(pid_t pid)
{
    int status;

    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
}

/* Waits until Redis answers (the kv's reconnect back-off included). */
static int wait_redis(kv *k)
{
    for (int tries = 0; tries < 500; tries++) {
        if (kv_ping(k, NULL) == CP_OK)
            return 0;
        usleep(20000);
    }
    return -1;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    kv_config kc = { 0 };
    events_config ec = { 0 };

    snprintf(f->root, sizeof f->root, "/tmp/cp-test-events-XXXXXX");
    if (mkdtemp(f->root) == NULL)
        return -1;
    snprintf(f->sock, sizeof f->sock, "%s/redis.sock", f->root);
    f->redis = start_redis(f->sock);
    kc.url = f->sock;
    if (f->redis < 0 || kv_create(&kc, &f->kv, NULL) != CP_OK || wait_redis(f->kv) != 0)
        return -1;
    ec.kv = f->kv;
    if (events_hub_create(&ec, &f->hub, NULL) != CP_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];

    events_hub_destroy(f->hub);
    kv_destroy(f->kv);
    stop_redis(f->redis);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->root);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static void make_order(order *o, int64_t id)
{
    memset(o, 0, sizeof *o);
    o->id = id;
    o->version = 1;
    o->state = ORDER_POOLED;
    o->requesting_id = 1;
    snprintf(o->modality, sizeof o->modality, "CR");
    snprintf(o->body_part, sizeof o->body_part, "CHEST");
}

/* The kinds of the stream's entries, oldest first, joined with ',' into out. */
static void stream_kinds(fixture *f, char *out, size_t cap)
{
    char key[KV_KEY_MAX];
    kv_reply *r = NULL;
    size_t n = 0;

    out[0] = '\0';
    assert_int_equal(kv_key(f->kv, key, sizeof key, "disp:events", NULL), CP_OK);
    assert_int_equal(kv_commandv(f->kv, &r, NULL, "XRANGE", key, "-", "+", (const char *)NULL),
                     CP_OK);
    assert_int_equal(r->type, KV_REPLY_ARRAY);
    for (size_t i = 0; i < r->count; i++) {
        const kv_reply *fields = r->elements[i]->elements[1];
        const char *text = fields->elements[1]->str;
        const char *kind = strstr(text, "\"kind\":\"");

        assert_non_null(kind);
        kind += 8;
        n += (size_t)snprintf(out + n, cap - n, "%s%.*s", i ? "," : "",
                              (int)strcspn(kind, "\""), kind);
    }
    kv_reply_free(r);
}

static void test_resync_after_lost_publish(void **state)
{
    fixture *f = *state;
    char kinds[256];
    cp_status st = CP_OK;
    order o;

    make_order(&o, 1);
    assert_int_equal(events_publish(f->hub, DISPATCH_EVENT_POOLED, &o, "pooled", 0, NULL),
                     CP_OK);
    stream_kinds(f, kinds, sizeof kinds);
    assert_string_equal(kinds, "pooled");

    /* Redis goes away: the change is lost and says so. */
    stop_redis(f->redis);
    f->redis = 0;
    make_order(&o, 2);
    assert_int_not_equal(events_publish(f->hub, DISPATCH_EVENT_POOLED, &o, "pooled", 0, NULL),
                         CP_OK);

    /* Back, empty: the next change goes out after a resync entry. */
    f->redis = start_redis(f->sock);
    assert_int_equal(wait_redis(f->kv), 0);
    make_order(&o, 3);
    for (int tries = 0; tries < 100; tries++) {
        st = events_publish(f->hub, DISPATCH_EVENT_STATUS, &o, "grabbed", 7, NULL);
        if (st == CP_OK)
            break;
        usleep(50000);
    }
    assert_int_equal(st, CP_OK);
    stream_kinds(f, kinds, sizeof kinds);
    assert_string_equal(kinds, "resync,status");

    /* Owed once: the next change comes alone. */
    assert_int_equal(events_publish(f->hub, DISPATCH_EVENT_STATUS, &o, "opened", 7, NULL),
                     CP_OK);
    stream_kinds(f, kinds, sizeof kinds);
    assert_string_equal(kinds, "resync,status,status");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_resync_after_lost_publish, setup, teardown),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

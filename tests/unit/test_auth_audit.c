/*
 * test_auth_audit.c - the audit trail (auth/audit.h): writers on many
 * threads, the cleaning of text fields, query filters and paging, the ATNA
 * JSON shape (PS3.15 A.5), and the hash chain found broken after the file
 * is changed behind its back: a field changed, a record removed, the tail
 * cut. Closing and opening again continues the chain.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>

#include "auth/audit.h"
#include "core/limits.h"
#include "core/log.h"

#define THREADS 8
#define PER_THREAD 1000

typedef struct fixture {
    char dir[64];
    char path[96];
    audit_log *log;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);

    if (fx == NULL)
        return -1;
    snprintf(fx->dir, sizeof fx->dir, "/tmp/cloudpacs-audit-XXXXXX");
    if (mkdtemp(fx->dir) == NULL)
        return -1;
    snprintf(fx->path, sizeof fx->path, "%s/index.sqlite", fx->dir);
    if (audit_open_sqlite(fx->path, &fx->log, NULL) != CP_OK)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    char cmd[128];

    audit_close(fx->log);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    if (system(cmd) != 0)
        return -1;
    free(fx);
    return 0;
}

#define SET(field, value) snprintf((field), sizeof(field), "%s", (value))

static audit_record make(audit_event event, const char *actor)
{
    audit_record r;

    memset(&r, 0, sizeof r);
    r.event = event;
    r.action = AUDIT_READ;
    r.outcome = AUDIT_SUCCESS;
    SET(r.actor, actor);
    return r;
}

/* --- collecting query results ----------------------------------------------- */

typedef struct collected {
    audit_record *items;
    size_t count;
    size_t cap;
} collected;

static cp_status collect(void *ctx, const audit_record *r)
{
    collected *c = ctx;

    if (c->count == c->cap) {
        c->cap = c->cap == 0 ? 64 : c->cap * 2;
        c->items = realloc(c->items, c->cap * sizeof *c->items);
        assert_non_null(c->items);
    }
    c->items[c->count++] = *r;
    return CP_OK;
}

static size_t count_matching(audit_log *log, audit_filter f)
{
    collected c = { NULL, 0, 0 };

    assert_int_equal(audit_query(log, &f, collect, &c, NULL), CP_OK);
    free(c.items);
    return c.count;
}

/* --- many writers ------------------------------------------------------------- */

typedef struct writer_arg {
    audit_log *log;
    int id;
} writer_arg;

static void *writer_main(void *p)
{
    writer_arg *w = p;
    char actor[32];

    snprintf(actor, sizeof actor, "writer%d", w->id);
    for (int i = 0; i < PER_THREAD; i++) {
        audit_record r = make(AUDIT_INSTANCES_ACCESSED, actor);

        r.user_id = w->id + 1;
        snprintf(r.object_id, sizeof r.object_id, "%d", i);
        if (audit_write(w->log, &r) != CP_OK)
            return (void *)1;
    }
    return NULL;
}

static void test_many_writers(void **state)
{
    fixture *fx = *state;
    pthread_t threads[THREADS];
    writer_arg args[THREADS];
    int next[THREADS] = { 0 };
    audit_filter f;
    audit_verify_result vr;
    int64_t seq = 0;

    for (int t = 0; t < THREADS; t++) {
        args[t].log = fx->log;
        args[t].id = t;
        assert_int_equal(pthread_create(&threads[t], NULL, writer_main, &args[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        void *rv;

        assert_int_equal(pthread_join(threads[t], &rv), 0);
        assert_null(rv);
    }
    assert_int_equal(audit_flush(fx->log, NULL), CP_OK);

    /* Every record once, seq 1..N without a hole, each writer's in its order. */
    memset(&f, 0, sizeof f);
    f.limit = AUDIT_QUERY_MAX;
    for (;;) {
        collected c = { NULL, 0, 0 };

        assert_int_equal(audit_query(fx->log, &f, collect, &c, NULL), CP_OK);
        for (size_t i = 0; i < c.count; i++) {
            int t = (int)c.items[i].user_id - 1;

            assert_int_equal(c.items[i].seq, ++seq);
            assert_true(t >= 0 && t < THREADS);
            assert_int_equal(atoi(c.items[i].object_id), next[t]++);
        }
        if (c.count > 0)
            f.after_seq = c.items[c.count - 1].seq;
        free(c.items);
        if (c.count < f.limit)
            break;
    }
    assert_int_equal(seq, THREADS * PER_THREAD);

    assert_int_equal(audit_verify(fx->log, &vr, NULL), CP_OK);
    assert_int_equal(vr.first_bad_seq, 0);
    assert_int_equal(vr.records, THREADS * PER_THREAD);
}

/* --- writing ------------------------------------------------------------------ */

static void test_write_refuses(void **state)
{
    fixture *fx = *state;
    audit_record r = make(AUDIT_QUERY, "alice");

    r.event = AUDIT_EVENT_NONE;
    assert_int_equal(audit_write(fx->log, &r), CP_ERR_INVALID);
    r = make(AUDIT_QUERY, "");
    assert_int_equal(audit_write(fx->log, &r), CP_ERR_INVALID);
    r = make(AUDIT_QUERY, "alice");
    r.action = (audit_action)'X';
    assert_int_equal(audit_write(fx->log, &r), CP_ERR_INVALID);
    r = make(AUDIT_QUERY, "alice");
    r.outcome = (audit_outcome)3;
    assert_int_equal(audit_write(fx->log, &r), CP_ERR_INVALID);
    assert_int_equal(audit_write(NULL, &r), CP_ERR_INVALID);
    assert_int_equal(audit_write(fx->log, NULL), CP_ERR_INVALID);
}

static void test_write_cleans(void **state)
{
    fixture *fx = *state;
    audit_record r = make(AUDIT_QUERY, "x");
    collected c = { NULL, 0, 0 };
    struct timespec ts;
    int64_t before;

    clock_gettime(CLOCK_REALTIME, &ts);
    before = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;

    /* Filled to the last byte, no NUL: cut to 64 bytes. */
    memset(r.actor, 'a', sizeof r.actor);
    /* 63 bytes and a two-byte character: cut before it, not in it. */
    memset(r.patient_id, 'p', 63);
    memcpy(r.patient_id + 63, "\xc3\xa9", 2);
    SET(r.object_id, "1.2\n3\t4\x7f" "5\xc2\x85" "6");
    SET(r.type, "bad\xff" "byte");
    assert_int_equal(audit_write(fx->log, &r), CP_OK);

    assert_int_equal(audit_query(fx->log, NULL, collect, &c, NULL), CP_OK);
    assert_int_equal(c.count, 1);
    assert_int_equal(strlen(c.items[0].actor), 64);
    assert_int_equal(strspn(c.items[0].actor, "a"), 64);
    assert_int_equal(strlen(c.items[0].patient_id), 63);
    assert_string_equal(c.items[0].object_id, "1.2 3 4 5 6");
    assert_string_equal(c.items[0].type, "bad?byte");
    assert_true(c.items[0].time_us >= before);
    assert_true(c.items[0].time_us < before + 60 * 1000000LL);
    assert_int_equal(c.items[0].seq, 1);
    free(c.items);
}

static void test_event_names(void **state)
{
    (void)state;
    assert_string_equal(audit_event_name(AUDIT_INSTANCES_ACCESSED), "instances_accessed");
    assert_string_equal(audit_event_code(AUDIT_INSTANCES_ACCESSED), "110103");
    assert_string_equal(audit_event_display(AUDIT_LOG_USED), "Audit Log Used");
    assert_int_equal(audit_event_parse("user_authentication"), AUDIT_USER_AUTHENTICATION);
    assert_int_equal(audit_event_parse("nonsense"), AUDIT_EVENT_NONE);
    assert_int_equal(audit_event_parse(NULL), AUDIT_EVENT_NONE);
    assert_string_equal(audit_event_name((audit_event)999), "");
    for (int e = AUDIT_EVENT_NONE + 1; e < AUDIT_EVENT_COUNT; e++)
        assert_int_equal(audit_event_parse(audit_event_name((audit_event)e)), e);
}

/* --- queries ------------------------------------------------------------------ */

#define T0 INT64_C(1764777600000000) /* 2025-12-03T16:00:00Z */

/*
 * Twelve records, one a minute from T0: users 1-3 in turn, actors named
 * after them, patients P0/P1 in turn, studies S0-S3 in turn, every third a
 * query.
 */
static void write_known(audit_log *log)
{
    for (int i = 0; i < 12; i++) {
        audit_record r = make(i % 3 == 2 ? AUDIT_QUERY : AUDIT_INSTANCES_ACCESSED, "");

        r.time_us = T0 + i * INT64_C(60000000);
        r.user_id = i % 3 + 1;
        snprintf(r.actor, sizeof r.actor, "user%d", i % 3 + 1);
        snprintf(r.patient_id, sizeof r.patient_id, "P%d", i % 2);
        snprintf(r.object_id, sizeof r.object_id, "1.2.3.%d", i % 4);
        SET(r.object_kind, "study");
        assert_int_equal(audit_write(log, &r), CP_OK);
    }
}

static void test_query_filters(void **state)
{
    fixture *fx = *state;
    audit_filter f;

    write_known(fx->log);

    memset(&f, 0, sizeof f);
    assert_int_equal(count_matching(fx->log, f), 12);
    f.user_id = 2;
    assert_int_equal(count_matching(fx->log, f), 4);

    memset(&f, 0, sizeof f);
    f.actor = "user3";
    assert_int_equal(count_matching(fx->log, f), 4);
    f.actor = "nobody";
    assert_int_equal(count_matching(fx->log, f), 0);

    memset(&f, 0, sizeof f);
    f.patient_id = "P1";
    assert_int_equal(count_matching(fx->log, f), 6);
    f.object_id = "1.2.3.1";
    assert_int_equal(count_matching(fx->log, f), 3);

    memset(&f, 0, sizeof f);
    f.event = AUDIT_QUERY;
    assert_int_equal(count_matching(fx->log, f), 4);
    f.event = AUDIT_STUDY_DELETED;
    assert_int_equal(count_matching(fx->log, f), 0);

    /* Both ends of the range are inclusive. */
    memset(&f, 0, sizeof f);
    f.from_us = T0 + 3 * INT64_C(60000000);
    f.to_us = T0 + 6 * INT64_C(60000000);
    assert_int_equal(count_matching(fx->log, f), 4);
    f.to_us = 0;
    assert_int_equal(count_matching(fx->log, f), 9);

    /* Filters combine. */
    memset(&f, 0, sizeof f);
    f.user_id = 1;
    f.patient_id = "P0";
    assert_int_equal(count_matching(fx->log, f), 2);
}

static void test_query_paging(void **state)
{
    fixture *fx = *state;
    audit_filter f;
    int64_t seen = 0;

    write_known(fx->log);

    /* Forwards: pages of 5 after the last seq seen. */
    memset(&f, 0, sizeof f);
    f.limit = 5;
    for (int page = 0; page < 4; page++) {
        collected c = { NULL, 0, 0 };

        assert_int_equal(audit_query(fx->log, &f, collect, &c, NULL), CP_OK);
        assert_int_equal(c.count, page < 2 ? 5 : page == 2 ? 2 : 0);
        for (size_t i = 0; i < c.count; i++)
            assert_int_equal(c.items[i].seq, ++seen);
        if (c.count > 0)
            f.after_seq = c.items[c.count - 1].seq;
        free(c.items);
    }
    assert_int_equal(seen, 12);

    /* Backwards: newest first, each page before the oldest one seen. */
    memset(&f, 0, sizeof f);
    f.limit = 5;
    f.newest_first = true;
    seen = 13;
    for (int page = 0; page < 3; page++) {
        collected c = { NULL, 0, 0 };

        assert_int_equal(audit_query(fx->log, &f, collect, &c, NULL), CP_OK);
        assert_int_equal(c.count, page < 2 ? 5 : 2);
        for (size_t i = 0; i < c.count; i++)
            assert_int_equal(c.items[i].seq, --seen);
        f.before_seq = c.items[c.count - 1].seq;
        free(c.items);
    }
    assert_int_equal(seen, 1);

    /* Paging with a filter: user 2 newest first, two at a time. */
    memset(&f, 0, sizeof f);
    f.user_id = 2;
    f.newest_first = true;
    f.limit = 2;
    {
        collected c = { NULL, 0, 0 };

        assert_int_equal(audit_query(fx->log, &f, collect, &c, NULL), CP_OK);
        assert_int_equal(c.count, 2);
        assert_int_equal(c.items[0].seq, 11);
        assert_int_equal(c.items[1].seq, 8);
        free(c.items);
    }
}

/* A callback's failure ends the query with that status. */
static cp_status stop_at_first(void *ctx, const audit_record *r)
{
    (void)r;
    (*(int *)ctx)++;
    return CP_ERR_STOPPED;
}

static void test_query_stops(void **state)
{
    fixture *fx = *state;
    int calls = 0;

    write_known(fx->log);
    assert_int_equal(audit_query(fx->log, NULL, stop_at_first, &calls, NULL), CP_ERR_STOPPED);
    assert_int_equal(calls, 1);
}

/* --- JSON ---------------------------------------------------------------------- */

typedef struct json_ctx {
    cp_buf text;
    int calls;
} json_ctx;

static cp_status to_json(void *ctx, const audit_record *r, const uint8_t hash[AUDIT_HASH_SIZE])
{
    json_ctx *j = ctx;

    j->calls++;
    return audit_record_json_hashed(r, hash, "cloudpacs-test", &j->text);
}

static json_t *get_path(json_t *root, const char *a, const char *b)
{
    json_t *v = json_object_get(root, a);

    return b == NULL ? v : json_object_get(v, b);
}

static void assert_code(json_t *code, const char *value, const char *scheme)
{
    assert_non_null(code);
    assert_string_equal(json_string_value(json_object_get(code, "csd-code")), value);
    assert_string_equal(json_string_value(json_object_get(code, "codeSystemName")), scheme);
    assert_non_null(json_string_value(json_object_get(code, "originalText")));
}

static void test_json_shape(void **state)
{
    fixture *fx = *state;
    audit_record r = make(AUDIT_INSTANCES_ACCESSED, "alice");
    json_ctx j = { CP_BUF_INIT, 0 };
    json_t *root, *ev, *ap, *objs, *o;
    json_error_t jerr;

    r.time_us = T0 + 123456;
    r.user_id = 42;
    SET(r.type, "wado");
    SET(r.actor_roles, "radiologist,reviewer");
    SET(r.peer, "192.0.2.7");
    SET(r.object_kind, "study");
    SET(r.object_id, "1.2.840.99.1");
    SET(r.patient_id, "PID-7");
    SET(r.detail, "{\"frames\":3}");
    assert_int_equal(audit_write(fx->log, &r), CP_OK);
    assert_int_equal(audit_query_hashed(fx->log, NULL, to_json, &j, NULL), CP_OK);
    assert_int_equal(j.calls, 1);
    assert_null(memchr(j.text.data, '\n', j.text.len));

    root = json_loads((const char *)j.text.data, 0, &jerr);
    assert_non_null(root);

    ev = json_object_get(root, "EventIdentification");
    assert_code(json_object_get(ev, "EventID"), "110103", "DCM");
    assert_string_equal(json_string_value(json_object_get(json_object_get(ev, "EventID"),
                                                          "originalText")),
                        "DICOM Instances Accessed");
    assert_string_equal(json_string_value(json_object_get(ev, "EventActionCode")), "R");
    assert_string_equal(json_string_value(json_object_get(ev, "EventDateTime")),
                        "2025-12-03T16:00:00.123456Z");
    assert_int_equal(json_integer_value(json_object_get(ev, "EventOutcomeIndicator")), 0);
    assert_code(json_array_get(json_object_get(ev, "EventTypeCode"), 0), "wado",
                "99CLOUDPACS");

    ap = json_array_get(json_object_get(root, "ActiveParticipant"), 0);
    assert_string_equal(json_string_value(json_object_get(ap, "UserID")), "alice");
    assert_string_equal(json_string_value(json_object_get(ap, "AlternativeUserID")), "42");
    assert_true(json_is_true(json_object_get(ap, "UserIsRequestor")));
    assert_int_equal(json_array_size(json_object_get(ap, "RoleIDCode")), 2);
    assert_code(json_array_get(json_object_get(ap, "RoleIDCode"), 1), "reviewer",
                "99CLOUDPACS");
    assert_string_equal(json_string_value(json_object_get(ap, "NetworkAccessPointID")),
                        "192.0.2.7");
    assert_string_equal(json_string_value(json_object_get(ap, "NetworkAccessPointTypeCode")),
                        "2");

    assert_string_equal(json_string_value(get_path(root, "AuditSourceIdentification",
                                                   "AuditSourceID")), "cloudpacs-test");

    objs = json_object_get(root, "ParticipantObjectIdentification");
    assert_int_equal(json_array_size(objs), 2);
    o = json_array_get(objs, 0);
    assert_int_equal(json_integer_value(json_object_get(o, "ParticipantObjectTypeCode")), 2);
    assert_int_equal(json_integer_value(json_object_get(o, "ParticipantObjectTypeCodeRole")),
                     3);
    assert_code(json_object_get(o, "ParticipantObjectIDTypeCode"), "110180", "DCM");
    assert_string_equal(json_string_value(json_object_get(o, "ParticipantObjectID")),
                        "1.2.840.99.1");
    o = json_array_get(objs, 1);
    assert_int_equal(json_integer_value(json_object_get(o, "ParticipantObjectTypeCode")), 1);
    assert_int_equal(json_integer_value(json_object_get(o, "ParticipantObjectTypeCodeRole")),
                     1);
    assert_code(json_object_get(o, "ParticipantObjectIDTypeCode"), "2", "RFC-3881");
    assert_string_equal(json_string_value(json_object_get(o, "ParticipantObjectID")),
                        "PID-7");

    assert_int_equal(json_integer_value(json_object_get(root, "seq")), 1);
    assert_int_equal(strlen(json_string_value(json_object_get(root, "hash"))),
                     2 * AUDIT_HASH_SIZE);
    assert_int_equal(json_integer_value(get_path(json_object_get(root, "cloudpacs"), "detail",
                                                 "frames")), 3);
    json_decref(root);

    /* Without a hash, "hash" is null; the rest is the same. */
    cp_buf_reset(&j.text);
    assert_int_equal(audit_record_json(&r, NULL, &j.text), CP_OK);
    root = json_loads((const char *)j.text.data, 0, &jerr);
    assert_non_null(root);
    assert_true(json_is_null(json_object_get(root, "hash")));
    assert_string_equal(json_string_value(get_path(root, "AuditSourceIdentification",
                                                   "AuditSourceID")), "cloudpacs");
    json_decref(root);
    cp_buf_free(&j.text);
}

/* --- the chain ------------------------------------------------------------------ */

static void write_n(audit_log *log, int n)
{
    for (int i = 0; i < n; i++) {
        audit_record r = make(AUDIT_QUERY, "bob");

        snprintf(r.object_id, sizeof r.object_id, "q%d", i);
        assert_int_equal(audit_write(log, &r), CP_OK);
    }
    assert_int_equal(audit_flush(log, NULL), CP_OK);
}

static void assert_intact(audit_log *log, int64_t records)
{
    audit_verify_result vr;

    assert_int_equal(audit_verify(log, &vr, NULL), CP_OK);
    if (vr.first_bad_seq != 0)
        fail_msg("chain broken at %lld: %s", (long long)vr.first_bad_seq, vr.problem);
    assert_int_equal(vr.records, records);
}

/* Runs SQL on the file through a connection of its own, as someone with the file would. */
static int raw_exec(const fixture *fx, const char *sql)
{
    sqlite3 *db = NULL;
    int rc;

    assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

#define DROP_TRIGGERS \
    "DROP TRIGGER audit_record_no_update; DROP TRIGGER audit_record_no_delete;"

static void test_triggers_refuse(void **state)
{
    fixture *fx = *state;

    write_n(fx->log, 3);
    assert_int_not_equal(raw_exec(fx, "UPDATE audit_record SET actor = 'eve' WHERE seq = 2"),
                         SQLITE_OK);
    assert_int_not_equal(raw_exec(fx, "DELETE FROM audit_record WHERE seq = 2"), SQLITE_OK);
    assert_int_not_equal(raw_exec(fx, "DELETE FROM audit_head"), SQLITE_OK);
    assert_intact(fx->log, 3);
}

static void test_tamper_field(void **state)
{
    fixture *fx = *state;
    audit_verify_result vr;

    write_n(fx->log, 10);
    assert_intact(fx->log, 10);
    assert_int_equal(raw_exec(fx, DROP_TRIGGERS
                              "UPDATE audit_record SET object_id = 'q9' WHERE seq = 5"),
                     SQLITE_OK);
    assert_int_equal(audit_verify(fx->log, &vr, NULL), CP_OK);
    assert_int_equal(vr.first_bad_seq, 5);
    assert_int_equal(vr.records, 4);
    assert_non_null(strstr(vr.problem, "changed"));
}

static void test_tamper_type_and_link(void **state)
{
    fixture *fx = *state;
    audit_record r = make(AUDIT_QUERY, "");
    audit_verify_result vr;

    write_n(fx->log, 4);
    memset(r.actor, 'a', sizeof r.actor - 1);
    assert_int_equal(audit_write(fx->log, &r), CP_OK);
    assert_intact(fx->log, 5);

    /* A value of another type that reads as the same number. */
    assert_int_equal(raw_exec(fx, DROP_TRIGGERS
                              "UPDATE audit_record SET outcome = '0x' WHERE seq = 2"),
                     SQLITE_OK);
    assert_int_equal(audit_verify(fx->log, &vr, NULL), CP_OK);
    assert_int_equal(vr.first_bad_seq, 2);
    assert_non_null(strstr(vr.problem, "type or size"));
    assert_int_equal(raw_exec(fx, "UPDATE audit_record SET outcome = 0 WHERE seq = 2"),
                     SQLITE_OK);
    assert_intact(fx->log, 5);

    /* A full field made longer would read back cut, as it was: refused. */
    assert_int_equal(raw_exec(fx, "UPDATE audit_record SET actor = actor || 'b' WHERE seq = 5"),
                     SQLITE_OK);
    assert_int_equal(audit_verify(fx->log, &vr, NULL), CP_OK);
    assert_int_equal(vr.first_bad_seq, 5);
    assert_int_equal(raw_exec(fx, "UPDATE audit_record SET actor = substr(actor, 1, 64) "
                              "WHERE seq = 5"), SQLITE_OK);
    assert_intact(fx->log, 5);

    /* A broken link. */
    assert_int_equal(raw_exec(fx, "UPDATE audit_record SET prev_hash = zeroblob(32) "
                              "WHERE seq = 3"), SQLITE_OK);
    assert_int_equal(audit_verify(fx->log, &vr, NULL), CP_OK);
    assert_int_equal(vr.first_bad_seq, 3);
    assert_non_null(strstr(vr.problem, "prev_hash"));
}

static void test_tamper_delete_middle(void **state)
{
    fixture *fx = *state;
    audit_verify_result vr;

    write_n(fx->log, 10);
    assert_int_equal(raw_exec(fx, DROP_TRIGGERS "DELETE FROM audit_record WHERE seq = 6"),
                     SQLITE_OK);
    assert_int_equal(audit_verify(fx->log, &vr, NULL), CP_OK);
    assert_int_equal(vr.first_bad_seq, 6);
    assert_non_null(strstr(vr.problem, "missing"));
}

static void test_tamper_tail(void **state)
{
    fixture *fx = *state;
    audit_verify_result vr;

    write_n(fx->log, 10);
    assert_int_equal(raw_exec(fx, DROP_TRIGGERS "DELETE FROM audit_record WHERE seq = 10"),
                     SQLITE_OK);
    assert_int_equal(audit_verify(fx->log, &vr, NULL), CP_OK);
    assert_int_equal(vr.first_bad_seq, 10);
    assert_int_equal(vr.records, 9);
    assert_non_null(strstr(vr.problem, "tail"));
}

static void test_foreign_row_beyond_head(void **state)
{
    fixture *fx = *state;
    audit_verify_result vr;
    audit_filter f;
    collected c = { NULL, 0, 0 };

    /* A row slipped in past the head neither stops the trail nor passes verify. */
    write_n(fx->log, 3);
    assert_int_equal(raw_exec(fx, "INSERT INTO audit_record SELECT 4, time_us, event, action,"
                              " outcome, type, user_id, actor, actor_roles,"
                              " actor_institution_id, peer, session_id, object_kind,"
                              " object_id, patient_id, institution_id, detail, prev_hash,"
                              " hash FROM audit_record WHERE seq = 3"), SQLITE_OK);
    write_n(fx->log, 2);
    memset(&f, 0, sizeof f);
    f.after_seq = 4;
    assert_int_equal(audit_query(fx->log, &f, collect, &c, NULL), CP_OK);
    assert_int_equal(c.count, 2);
    assert_int_equal(c.items[0].seq, 5);
    free(c.items);
    assert_int_equal(audit_verify(fx->log, &vr, NULL), CP_OK);
    assert_int_equal(vr.first_bad_seq, 4);
    assert_int_equal(vr.records, 3);
}

/* A commit that fails is reported by flush, logged, retried, and lands once it can. */
static void test_failed_commit_retried(void **state)
{
    fixture *fx = *state;
    audit_record r = make(AUDIT_QUERY, "dave");
    FILE *logs = tmpfile();
    char text[4096];
    size_t n;
    cp_status st = CP_ERR_IO;

    assert_non_null(logs);
    cp_log_set_stream(logs);
    write_n(fx->log, 3);
    assert_int_equal(raw_exec(fx, "DROP TRIGGER audit_head_no_delete; DELETE FROM audit_head"),
                     SQLITE_OK);
    assert_int_equal(audit_write(fx->log, &r), CP_OK);
    assert_int_equal(audit_flush(fx->log, NULL), CP_ERR_IO);

    assert_int_equal(raw_exec(fx, "INSERT INTO audit_head SELECT 1, seq, hash"
                              " FROM audit_record WHERE seq = 3"), SQLITE_OK);
    for (int i = 0; i < 100 && st != CP_OK; i++)
        st = audit_flush(fx->log, NULL);
    assert_int_equal(st, CP_OK);
    assert_intact(fx->log, 4);

    cp_log_set_stream(NULL);
    rewind(logs);
    n = fread(text, 1, sizeof text - 1, logs);
    text[n] = '\0';
    fclose(logs);
    assert_non_null(strstr(text, "event=audit.commit_failed"));
    assert_null(strstr(text, "dave"));
}

static void test_tamper_head(void **state)
{
    fixture *fx = *state;
    audit_verify_result vr;

    write_n(fx->log, 3);
    assert_int_equal(raw_exec(fx, "UPDATE audit_head SET hash = zeroblob(32)"), SQLITE_OK);
    assert_int_equal(audit_verify(fx->log, &vr, NULL), CP_OK);
    assert_int_equal(vr.first_bad_seq, 3);
    assert_non_null(strstr(vr.problem, "head"));
}

static void test_reopen_continues(void **state)
{
    fixture *fx = *state;
    collected c = { NULL, 0, 0 };
    audit_filter f;

    write_n(fx->log, 5);
    audit_close(fx->log);
    fx->log = NULL;
    assert_int_equal(audit_open_sqlite(fx->path, &fx->log, NULL), CP_OK);
    assert_intact(fx->log, 5);

    write_n(fx->log, 5);
    assert_intact(fx->log, 10);
    memset(&f, 0, sizeof f);
    f.after_seq = 5;
    assert_int_equal(audit_query(fx->log, &f, collect, &c, NULL), CP_OK);
    assert_int_equal(c.count, 5);
    assert_int_equal(c.items[0].seq, 6);
    assert_string_equal(c.items[0].object_id, "q0");
    free(c.items);

    /* Records queued just before close are committed by it. */
    write_n(fx->log, 0);
    for (int i = 0; i < 3; i++) {
        audit_record r = make(AUDIT_LOG_USED, "carol");

        assert_int_equal(audit_write(fx->log, &r), CP_OK);
    }
    audit_close(fx->log);
    fx->log = NULL;
    assert_int_equal(audit_open_sqlite(fx->path, &fx->log, NULL), CP_OK);
    assert_intact(fx->log, 13);
}

/* Two logs on one file (two processes, as the server and the CLI) share one chain. */
static void test_two_writers_one_file(void **state)
{
    fixture *fx = *state;
    audit_log *other = NULL;

    assert_int_equal(audit_open_sqlite(fx->path, &other, NULL), CP_OK);
    for (int i = 0; i < 50; i++) {
        audit_record r = make(AUDIT_QUERY, i % 2 ? "one" : "two");

        assert_int_equal(audit_write(i % 2 ? fx->log : other, &r), CP_OK);
    }
    audit_close(other);
    assert_int_equal(audit_flush(fx->log, NULL), CP_OK);
    assert_intact(fx->log, 50);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_names),
        cmocka_unit_test_setup_teardown(test_many_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_cleans, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_stops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_triggers_refuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_type_and_link, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_delete_middle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_commit_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_row_beyond_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_continues, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_writers_one_file, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

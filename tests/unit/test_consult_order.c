/*
 * test_consult_order.c - reading orders on SQLite: creation and the one
 * open order per study, every move of the model and the refused ones, the
 * compare-and-set on (state, version), histories and listing filters;
 * the phone's last four digits kept across moves and a reopening.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "consult/order.h"

static char g_dir[64];
static char g_path[128];
static int64_t g_now = 1700000000000000;

static int64_t test_now(void)
{
    return g_now;
}

static int setup(void **state)
{
    order_store *s = NULL;

    snprintf(g_dir, sizeof g_dir, "/tmp/cloudpacs-order-XXXXXX");
    if (mkdtemp(g_dir) == NULL)
        return -1;
    snprintf(g_path, sizeof g_path, "%s/index.sqlite", g_dir);
    if (order_store_open_sqlite(g_path, &s, NULL) != CP_OK)
        return -1;
    order_store_set_clock(s, test_now);
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    char p[160];

    order_store_close(*state);
    snprintf(p, sizeof p, "%s-wal", g_path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", g_path);
    unlink(p);
    unlink(g_path);
    rmdir(g_dir);
    return 0;
}

static order new_order(const char *uid, const char *patient, int64_t requesting)
{
    order o;

    memset(&o, 0, sizeof o);
    snprintf(o.study_uid, sizeof o.study_uid, "%s", uid);
    snprintf(o.patient_id, sizeof o.patient_id, "%s", patient);
    snprintf(o.issuer, sizeof o.issuer, "HOSP");
    snprintf(o.modality, sizeof o.modality, "CT");
    snprintf(o.body_part, sizeof o.body_part, "CHEST");
    o.weight = 3;
    o.requesting_id = requesting;
    o.requested_by = 7;
    return o;
}

/* Moves o to `to` from its current state. */
static cp_status move(order_store *s, order *o, order_state to, const char *event)
{
    order_state from = o->state;
    cp_status st;

    o->state = to;
    st = order_transition(s, o, from, event, 5, "why", NULL);
    if (st != CP_OK)
        o->state = from;
    return st;
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(order_state_name(ORDER_POOLED), "pooled");
    assert_string_equal(order_state_name(ORDER_CANCELLED), "cancelled");
    assert_null(order_state_name(0));
    assert_int_equal(order_state_parse("returned"), ORDER_RETURNED);
    assert_int_equal(order_state_parse("nope"), 0);
    assert_string_equal(order_priority_name(ORDER_URGENT), "urgent");
    assert_int_equal(order_priority_parse("routine"), ORDER_ROUTINE);
    assert_int_equal(order_priority_parse("x"), -1);
    assert_true(order_state_open(ORDER_APPROVED));
    assert_false(order_state_open(ORDER_RELEASED));
    assert_false(order_state_open(ORDER_CANCELLED));
}

static void test_create_and_duplicate(void **state)
{
    order_store *s = *state;
    order o = new_order("1.2.3.1", "P1", 10), dup = new_order("1.2.3.1", "P1", 10), got;
    cp_error err;

    assert_int_equal(order_create(s, &o, 7, NULL), CP_OK);
    assert_true(o.id > 0);
    assert_int_equal(o.version, 1);
    assert_int_equal(o.state, ORDER_SUBMITTED);
    assert_int_equal(o.created_us, g_now);

    cp_error_clear(&err);
    assert_int_equal(order_create(s, &dup, 7, &err), CP_ERR_EXISTS);

    assert_int_equal(order_get(s, o.id, &got, NULL), CP_OK);
    assert_string_equal(got.study_uid, "1.2.3.1");
    assert_string_equal(got.patient_id, "P1");
    assert_int_equal(got.weight, 3);
    assert_int_equal(got.requesting_id, 10);
    assert_int_equal(order_get(s, 999999, &got, NULL), CP_ERR_NOT_FOUND);

    /* Once the first is closed, the study may be ordered again. */
    assert_int_equal(move(s, &o, ORDER_CANCELLED, "cancelled"), CP_OK);
    assert_int_equal(order_create(s, &dup, 7, NULL), CP_OK);
    assert_int_equal(move(s, &dup, ORDER_CANCELLED, "cancelled"), CP_OK);
}

static void test_full_path(void **state)
{
    order_store *s = *state;
    order o = new_order("1.2.3.2", "P2", 10), got;

    assert_int_equal(order_create(s, &o, 7, NULL), CP_OK);
    assert_int_equal(move(s, &o, ORDER_POOLED, "pooled"), CP_OK);
    assert_int_equal(o.version, 2);
    assert_int_equal(move(s, &o, ORDER_OFFERED, "offered"), CP_OK);
    assert_int_equal(move(s, &o, ORDER_POOLED, "declined"), CP_OK);
    o.doctor_id = 42;
    assert_int_equal(move(s, &o, ORDER_CLAIMED, "grabbed"), CP_OK);
    assert_int_equal(move(s, &o, ORDER_POOLED, "given_back"), CP_OK);
    assert_int_equal(move(s, &o, ORDER_OFFERED, "offered"), CP_OK);
    assert_int_equal(move(s, &o, ORDER_CLAIMED, "accepted"), CP_OK);
    assert_int_equal(move(s, &o, ORDER_REPORTED, "reported"), CP_OK);
    assert_int_equal(move(s, &o, ORDER_RETURNED, "rejected"), CP_OK);
    assert_int_equal(move(s, &o, ORDER_REPORTED, "reported"), CP_OK);
    assert_int_equal(move(s, &o, ORDER_APPROVED, "approved"), CP_OK);
    assert_int_equal(move(s, &o, ORDER_RELEASED, "released"), CP_OK);
    assert_int_equal(o.version, 13);

    assert_int_equal(order_get(s, o.id, &got, NULL), CP_OK);
    assert_int_equal(got.state, ORDER_RELEASED);
    assert_int_equal(got.version, 13);
    assert_int_equal(got.doctor_id, 42);

    /* Submitted may go straight to offered or claimed. */
    o = new_order("1.2.3.3", "P2", 10);
    assert_int_equal(order_create(s, &o, 7, NULL), CP_OK);
    assert_int_equal(move(s, &o, ORDER_CLAIMED, "affinity"), CP_OK);
    o = new_order("1.2.3.4", "P2", 10);
    assert_int_equal(order_create(s, &o, 7, NULL), CP_OK);
    assert_int_equal(move(s, &o, ORDER_OFFERED, "offered"), CP_OK);
    assert_int_equal(move(s, &o, ORDER_CANCELLED, "cancelled"), CP_OK);
}

static void test_refused_moves(void **state)
{
    order_store *s = *state;
    order o = new_order("1.2.3.5", "P3", 10);
    static const order_state bad_from_submitted[] = {
        ORDER_REPORTED, ORDER_RETURNED, ORDER_APPROVED, ORDER_RELEASED, ORDER_SUBMITTED,
    };

    assert_int_equal(order_create(s, &o, 7, NULL), CP_OK);
    for (size_t i = 0; i < sizeof bad_from_submitted / sizeof bad_from_submitted[0]; i++)
        assert_int_equal(move(s, &o, bad_from_submitted[i], "x"), CP_ERR_INVALID);
    assert_int_equal(o.version, 1);

    assert_int_equal(move(s, &o, ORDER_POOLED, "pooled"), CP_OK);
    assert_int_equal(move(s, &o, ORDER_REPORTED, "reported"), CP_ERR_INVALID);
    assert_int_equal(move(s, &o, ORDER_POOLED, "pooled"), CP_ERR_INVALID);
    assert_int_equal(move(s, &o, ORDER_CLAIMED, "grabbed"), CP_OK);
    assert_int_equal(move(s, &o, ORDER_CLAIMED, "grabbed"), CP_ERR_INVALID);
    assert_int_equal(move(s, &o, ORDER_CANCELLED, "cancelled"), CP_ERR_INVALID);
    assert_int_equal(move(s, &o, ORDER_APPROVED, "approved"), CP_ERR_INVALID);
    assert_int_equal(move(s, &o, ORDER_REPORTED, "reported"), CP_OK);
    assert_int_equal(move(s, &o, ORDER_RELEASED, "released"), CP_ERR_INVALID);
    assert_int_equal(move(s, &o, ORDER_CANCELLED, "cancelled"), CP_ERR_INVALID);
    assert_int_equal(move(s, &o, ORDER_APPROVED, "approved"), CP_OK);
    assert_int_equal(move(s, &o, ORDER_RELEASED, "released"), CP_OK);
    assert_int_equal(move(s, &o, ORDER_POOLED, "pooled"), CP_ERR_INVALID);
}

static void test_compare_and_set(void **state)
{
    order_store *s = *state;
    order o = new_order("1.2.3.6", "P4", 10), a, b, got;

    assert_int_equal(order_create(s, &o, 7, NULL), CP_OK);
    assert_int_equal(move(s, &o, ORDER_POOLED, "pooled"), CP_OK);

    /* Two doctors saw the same version: one wins, the other gets AGAIN. */
    a = o;
    b = o;
    a.doctor_id = 1;
    b.doctor_id = 2;
    assert_int_equal(move(s, &a, ORDER_CLAIMED, "grabbed"), CP_OK);
    assert_int_equal(move(s, &b, ORDER_CLAIMED, "grabbed"), CP_ERR_AGAIN);
    assert_int_equal(b.version, o.version);
    assert_int_equal(order_get(s, o.id, &got, NULL), CP_OK);
    assert_int_equal(got.doctor_id, 1);
    assert_int_equal(got.version, a.version);

    /* A stale state is refused the same way. */
    b = o;
    assert_int_equal(move(s, &b, ORDER_CANCELLED, "cancelled"), CP_ERR_AGAIN);
}

typedef struct hist {
    order_event e[32];
    size_t n;
} hist;

static cp_status collect_event(void *ctx, const order_event *e)
{
    hist *h = ctx;

    if (h->n < 32)
        h->e[h->n++] = *e;
    return CP_OK;
}

static void test_history(void **state)
{
    order_store *s = *state;
    order o = new_order("1.2.3.7", "P5", 10);
    hist h = { .n = 0 };

    g_now += 1000;
    assert_int_equal(order_create(s, &o, 7, NULL), CP_OK);
    g_now += 1000;
    assert_int_equal(move(s, &o, ORDER_POOLED, "pooled"), CP_OK);
    g_now += 1000;
    assert_int_equal(order_note(s, o.id, "deadline_near", 0, "80%", NULL), CP_OK);
    assert_int_equal(order_note(s, 999999, "x", 0, "", NULL), CP_ERR_NOT_FOUND);
    {
        static char longer[ORDER_REASON_MAX + 2];

        memset(longer, 'x', ORDER_REASON_MAX + 1);
        assert_int_equal(order_note(s, o.id, "x", 0, longer, NULL), CP_ERR_LIMIT);
        assert_int_equal(order_note(s, o.id, "", 0, "", NULL), CP_ERR_INVALID);
    }
    assert_int_equal(order_history(s, o.id, collect_event, &h, NULL), CP_OK);

    assert_int_equal(h.n, 3);
    assert_int_equal(h.e[0].seq, 1);
    assert_string_equal(h.e[0].event, "submitted");
    assert_int_equal(h.e[0].to, ORDER_SUBMITTED);
    assert_int_equal(h.e[0].actor_id, 7);
    assert_int_equal(h.e[1].from, ORDER_SUBMITTED);
    assert_int_equal(h.e[1].to, ORDER_POOLED);
    assert_string_equal(h.e[1].reason, "why");
    assert_int_equal(h.e[1].time_us, g_now - 1000);
    assert_int_equal(h.e[2].seq, 3);
    assert_string_equal(h.e[2].event, "deadline_near");
    assert_int_equal(h.e[2].from, ORDER_POOLED);
    assert_int_equal(h.e[2].to, ORDER_POOLED);
    assert_string_equal(h.e[2].reason, "80%");
}

typedef struct ids {
    int64_t id[64];
    size_t n;
} ids;

static cp_status collect_id(void *ctx, const order *o)
{
    ids *l = ctx;

    if (l->n < 64)
        l->id[l->n++] = o->id;
    return CP_OK;
}

static void test_filters(void **state)
{
    order_store *s = *state;
    order a = new_order("1.2.9.1", "PF", 20), b = new_order("1.2.9.2", "PF", 21);
    order c = new_order("1.2.9.3", "PG", 20);
    order_state pooled = ORDER_POOLED;
    int64_t inst20 = 20, both[2] = { 20, 21 };
    order_filter f;
    ids l;

    g_now = 1800000000000000;
    assert_int_equal(order_create(s, &a, 7, NULL), CP_OK);
    g_now += 10;
    assert_int_equal(order_create(s, &b, 7, NULL), CP_OK);
    g_now += 10;
    assert_int_equal(order_create(s, &c, 7, NULL), CP_OK);
    assert_int_equal(move(s, &a, ORDER_POOLED, "pooled"), CP_OK);
    c.doctor_id = 99;
    assert_int_equal(move(s, &c, ORDER_CLAIMED, "affinity"), CP_OK);

    memset(&f, 0, sizeof f);
    f.from_us = 1800000000000000;
    memset(&l, 0, sizeof l);
    assert_int_equal(order_list(s, &f, collect_id, &l, NULL), CP_OK);
    assert_int_equal(l.n, 3);
    assert_true(l.id[0] < l.id[1] && l.id[1] < l.id[2]);

    f.requesting = &inst20;
    f.requesting_count = 1;
    memset(&l, 0, sizeof l);
    assert_int_equal(order_list(s, &f, collect_id, &l, NULL), CP_OK);
    assert_int_equal(l.n, 2);

    f.requesting = both;
    f.requesting_count = 2;
    f.states = &pooled;
    f.state_count = 1;
    memset(&l, 0, sizeof l);
    assert_int_equal(order_list(s, &f, collect_id, &l, NULL), CP_OK);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.id[0], a.id);

    memset(&f, 0, sizeof f);
    f.doctor_id = 99;
    memset(&l, 0, sizeof l);
    assert_int_equal(order_list(s, &f, collect_id, &l, NULL), CP_OK);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.id[0], c.id);

    memset(&f, 0, sizeof f);
    f.patient_id = "PF";
    f.study_uid = "1.2.9.2";
    memset(&l, 0, sizeof l);
    assert_int_equal(order_list(s, &f, collect_id, &l, NULL), CP_OK);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.id[0], b.id);

    /* Paging and time bounds. */
    memset(&f, 0, sizeof f);
    f.from_us = 1800000000000000;
    f.after_id = a.id;
    f.limit = 1;
    memset(&l, 0, sizeof l);
    assert_int_equal(order_list(s, &f, collect_id, &l, NULL), CP_OK);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.id[0], b.id);
    memset(&f, 0, sizeof f);
    f.from_us = 1800000000000000;
    f.to_us = 1800000000000010;
    memset(&l, 0, sizeof l);
    assert_int_equal(order_list(s, &f, collect_id, &l, NULL), CP_OK);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.id[0], a.id);
}

static void test_reopen(void **state)
{
    order_store *s = NULL;
    order got;
    ids l = { .n = 0 };

    (void)state;
    assert_int_equal(order_store_open_sqlite(g_path, &s, NULL), CP_OK);
    assert_int_equal(order_list(s, NULL, collect_id, &l, NULL), CP_OK);
    assert_true(l.n > 0);
    assert_int_equal(order_get(s, l.id[0], &got, NULL), CP_OK);
    order_store_close(s);
}

/* The last four digits of the patient's phone: four digits or none, kept as they move. */
static void test_phone_last4(void **state)
{
    order_store *s = *state;
    order o = new_order("1.2.3.77", "P77", 10), bad = new_order("1.2.3.78", "P78", 10), got;
    order_store *again = NULL;

    snprintf(o.phone_last4, sizeof o.phone_last4, "0427");
    assert_int_equal(order_create(s, &o, 7, NULL), CP_OK);
    assert_int_equal(move(s, &o, ORDER_POOLED, "pooled"), CP_OK);
    assert_int_equal(order_get(s, o.id, &got, NULL), CP_OK);
    assert_string_equal(got.phone_last4, "0427");
    /* Read back by another store of the same file (a restart). */
    assert_int_equal(order_store_open_sqlite(g_path, &again, NULL), CP_OK);
    assert_int_equal(order_get(again, o.id, &got, NULL), CP_OK);
    assert_string_equal(got.phone_last4, "0427");
    order_store_close(again);

    snprintf(bad.phone_last4, sizeof bad.phone_last4, "12a4");
    assert_int_equal(order_create(s, &bad, 7, NULL), CP_ERR_INVALID);
    snprintf(bad.phone_last4, sizeof bad.phone_last4, "123");
    assert_int_equal(order_create(s, &bad, 7, NULL), CP_ERR_INVALID);
    bad.phone_last4[0] = '\0';
    assert_int_equal(order_create(s, &bad, 7, NULL), CP_OK);
    assert_int_equal(order_get(s, bad.id, &got, NULL), CP_OK);
    assert_string_equal(got.phone_last4, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_create_and_duplicate),
        cmocka_unit_test(test_full_path),
        cmocka_unit_test(test_refused_moves),
        cmocka_unit_test(test_compare_and_set),
        cmocka_unit_test(test_history),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_reopen),
        cmocka_unit_test(test_phone_last4),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}

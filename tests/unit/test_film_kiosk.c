/*
 * test_film_kiosk.c - the kiosks' print record (film/kiosk.h): prints
 * recorded and counted per order, the counts by day and kiosk over a
 * period, pages out of range refused, and the table made on first use of a
 * fresh database and kept across calls.
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

#include "film/kiosk.h"

/* 2026-12-04T10:00:00Z and the day after. */
#define DAY1_US INT64_C(1796378400000000)
#define DAY_US INT64_C(86400000000)

typedef struct fixture {
    char dir[64];
    char db[128];
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);

    assert_non_null(fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/cp-kiosk-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->db, sizeof fx->db, "%s/index.sqlite", fx->dir);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    char path[160];

    snprintf(path, sizeof path, "%s-wal", fx->db);
    unlink(path);
    snprintf(path, sizeof path, "%s-shm", fx->db);
    unlink(path);
    unlink(fx->db);
    rmdir(fx->dir);
    free(fx);
    return 0;
}

static void print_at(const char *db, int64_t kiosk, const char *name, int64_t order, bool film,
                     int pages, int64_t when)
{
    film_kiosk_print p;

    memset(&p, 0, sizeof p);
    p.institution_id = 7;
    p.kiosk_kind = 2;
    p.kiosk_id = kiosk;
    snprintf(p.kiosk, sizeof p.kiosk, "%s", name);
    p.order_id = order;
    p.film = film;
    p.pages = pages;
    p.time_us = when;
    assert_int_equal(film_kiosk_record(db, &p, NULL), CP_OK);
    assert_true(p.id > 0);
}

typedef struct days {
    film_kiosk_day rows[8];
    size_t count;
} days;

static cp_status day_one(void *ctx, const film_kiosk_day *d)
{
    days *c = ctx;

    assert_true(c->count < 8);
    c->rows[c->count++] = *d;
    return CP_OK;
}

static void test_record_and_count(void **state)
{
    fixture *fx = *state;
    film_kiosk_print bad;
    int64_t n = -1;
    days c = { 0 };

    /* A fresh database: nothing printed, the table made by the first call. */
    assert_int_equal(film_kiosk_count(fx->db, 1, &n, NULL), CP_OK);
    assert_int_equal(n, 0);

    print_at(fx->db, 1, "lobby-1", 10, false, 1, DAY1_US);
    print_at(fx->db, 1, "lobby-1", 10, true, 3, DAY1_US + 60000000);
    print_at(fx->db, 2, "lobby-2", 11, false, 2, DAY1_US + 120000000);
    print_at(fx->db, 1, "lobby-one", 12, false, 1, DAY1_US + DAY_US);

    assert_int_equal(film_kiosk_count(fx->db, 10, &n, NULL), CP_OK);
    assert_int_equal(n, 2);
    assert_int_equal(film_kiosk_count(fx->db, 11, &n, NULL), CP_OK);
    assert_int_equal(n, 1);

    assert_int_equal(film_kiosk_days(fx->db, 0, 0, day_one, &c, NULL), CP_OK);
    assert_int_equal(c.count, 3);
    assert_string_equal(c.rows[0].day, "2026-12-04");
    assert_int_equal(c.rows[0].kiosk_id, 1);
    assert_int_equal(c.rows[0].reports, 1);
    assert_int_equal(c.rows[0].films, 1);
    assert_int_equal(c.rows[0].pages, 4);
    assert_int_equal(c.rows[1].kiosk_id, 2);
    assert_string_equal(c.rows[1].kiosk, "lobby-2");
    assert_string_equal(c.rows[2].day, "2026-12-05");
    assert_string_equal(c.rows[2].kiosk, "lobby-one");

    /* A period: the second day only. */
    c.count = 0;
    assert_int_equal(film_kiosk_days(fx->db, DAY1_US + DAY_US / 2, 0, day_one, &c, NULL),
                     CP_OK);
    assert_int_equal(c.count, 1);
    assert_int_equal(c.rows[0].institution_id, 7);

    /* Pages out of range and no order are refused; nothing is written. */
    memset(&bad, 0, sizeof bad);
    bad.order_id = 10;
    bad.pages = 0;
    assert_int_equal(film_kiosk_record(fx->db, &bad, NULL), CP_ERR_INVALID);
    bad.pages = FILM_KIOSK_PAGES_MAX + 1;
    assert_int_equal(film_kiosk_record(fx->db, &bad, NULL), CP_ERR_INVALID);
    bad.pages = 1;
    bad.order_id = 0;
    assert_int_equal(film_kiosk_record(fx->db, &bad, NULL), CP_ERR_INVALID);
    assert_int_equal(film_kiosk_count(fx->db, 10, &n, NULL), CP_OK);
    assert_int_equal(n, 2);
    assert_int_equal(film_kiosk_count(NULL, 10, &n, NULL), CP_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_record_and_count, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

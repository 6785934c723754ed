/*
 * test_ingest_stable.c - the intake's stability rule (ingest/stable.h): a
 * file is ready only once size and mtime held for the quiet time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "ingest/stable.h"

#define S 1000000

static void test_quiet_time(void **state)
{
    stable_tracker *t = stable_create(2 * S);
    int64_t wait = 0;

    (void)state;
    assert_non_null(t);
    /* First sight: never ready at once. */
    assert_false(stable_observe(t, "a.dcm", 100, 5, 10 * S, &wait));
    assert_int_equal(wait, 2 * S);
    assert_false(stable_observe(t, "a.dcm", 100, 5, 11 * S, &wait));
    assert_int_equal(wait, S);
    assert_true(stable_observe(t, "a.dcm", 100, 5, 12 * S, &wait));
    assert_int_equal(wait, 0);
    stable_destroy(t);
}

static void test_growing_file(void **state)
{
    stable_tracker *t = stable_create(2 * S);
    int64_t wait = 0;

    (void)state;
    assert_false(stable_observe(t, "b.dcm", 100, 5, 0, &wait));
    /* Still being written: the size changes, the clock restarts. */
    assert_false(stable_observe(t, "b.dcm", 200, 5, 3 * S, &wait));
    assert_int_equal(wait, 2 * S);
    /* The size is back but the mtime moved: restarts too. */
    assert_false(stable_observe(t, "b.dcm", 200, 6, 4 * S, &wait));
    assert_false(stable_observe(t, "b.dcm", 200, 6, 5 * S, &wait));
    assert_true(stable_observe(t, "b.dcm", 200, 6, 6 * S, &wait));
    stable_destroy(t);
}

static void test_sweep_and_forget(void **state)
{
    stable_tracker *t = stable_create(S);
    char name[32];
    int64_t wait;

    (void)state;
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "f%d", i);
        stable_observe(t, name, 1, 1, 0, &wait);
    }
    assert_int_equal(stable_count(t), 1000);
    stable_sweep(t);
    assert_int_equal(stable_count(t), 1000);
    /* The next scan sees only f0..f9: the others are gone. */
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof name, "f%d", i);
        assert_true(stable_observe(t, name, 1, 1, S, &wait));
    }
    stable_sweep(t);
    assert_int_equal(stable_count(t), 10);
    stable_forget(t, "f0");
    stable_forget(t, "nothing");
    assert_int_equal(stable_count(t), 9);
    /* Forgotten and seen again: a new first sight. */
    assert_false(stable_observe(t, "f0", 1, 1, 5 * S, &wait));
    stable_destroy(t);
}

static void test_zero_quiet(void **state)
{
    stable_tracker *t = stable_create(0);
    int64_t wait;

    (void)state;
    assert_true(stable_observe(t, "c", 1, 1, 0, &wait));
    stable_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quiet_time),
        cmocka_unit_test(test_growing_file),
        cmocka_unit_test(test_sweep_and_forget),
        cmocka_unit_test(test_zero_quiet),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

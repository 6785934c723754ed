/*
 * test_kv_redisd.c - the embedded redis-server: started in a temporary data
 * directory, used through kv, persisted in its append-only file, restarted
 * by the watcher after a SIGKILL with its data, stopped without leaving a
 * process behind, and moved to /tmp when the data directory's path is too
 * long for a Unix socket.
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/log.h"
#include "kv/kv.h"
#include "kv/redisd.h"

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void make_temp(char *dir, size_t cap)
{
    snprintf(dir, cap, "/tmp/cloudpacs-redisd-XXXXXX");
    assert_non_null(mkdtemp(dir));
}

static void remove_tree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Whether process pid exists (as anything, zombie included). */
static int process_exists(int pid)
{
    return kill(pid, 0) == 0 || errno != ESRCH;
}

static kv *open_kv(const redisd *r)
{
    kv_config cfg = { .url = redisd_url(r) };
    kv *k = NULL;

    assert_int_equal(kv_create(&cfg, &k, NULL), CP_OK);
    return k;
}

/* Waits up to 10 s for a non-empty *.aof file under dir (or a subdirectory). */
static int aof_written(const char *dir)
{
    char sub[512];

    snprintf(sub, sizeof(sub), "%s/appendonlydir", dir);
    for (int i = 0; i < 500; i++) {
        const char *where[2] = { sub, dir };

        for (int w = 0; w < 2; w++) {
            DIR *d = opendir(where[w]);
            struct dirent *e;

            while (d != NULL && (e = readdir(d)) != NULL) {
                char path[800];
                struct stat st;
                size_t n = strlen(e->d_name);

                if (n < 4 || strcmp(e->d_name + n - 4, ".aof") != 0
                    || strstr(e->d_name, ".incr.") == NULL)
                    continue;
                snprintf(path, sizeof(path), "%s/%s", where[w], e->d_name);
                if (stat(path, &st) == 0 && st.st_size > 0) {
                    closedir(d);
                    return 1;
                }
            }
            if (d != NULL)
                closedir(d);
        }
        sleep_ms(20);
    }
    return 0;
}

static void test_start_persist_restart_stop(void **state)
{
    char dir[64];
    char path[128];
    char url[128];
    struct stat st;
    kv_reply *r = NULL;
    redisd_config cfg = { 0 };
    redisd *rd = NULL;
    cp_error err;
    int pid;
    int pid2 = 0;
    bool back = false;
    FILE *logs = tmpfile();
    char line[512];
    bool logged = false;
    kv *k;

    (void)state;
    assert_non_null(logs);
    cp_log_set_stream(logs);
    make_temp(dir, sizeof(dir));
    cfg.data_dir = dir;
    cp_error_clear(&err);
    assert_int_equal(redisd_start(&cfg, &rd, &err), CP_OK);

    snprintf(url, sizeof(url), "unix://%s/redis/redis.sock", dir);
    assert_string_equal(redisd_url(rd), url);
    pid = redisd_pid(rd);
    assert_true(pid > 0);
    assert_int_equal(redisd_restarts(rd), 0);
    snprintf(path, sizeof(path), "%s/redis", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(path, sizeof(path), "%s/redis/redis.conf", dir);
    assert_int_equal(stat(path, &st), 0);
    snprintf(path, sizeof(path), "%s/redis/redis.log", dir);
    assert_int_equal(stat(path, &st), 0);

    /* A second one on the same data directory is refused. */
    {
        redisd *other = (redisd *)1;

        cp_error_clear(&err);
        assert_int_equal(redisd_start(&cfg, &other, &err), CP_ERR_IO);
        assert_null(other);
        assert_non_null(strstr(err.detail, "already"));
    }

    k = open_kv(rd);
    assert_int_equal(kv_commandv(k, NULL, NULL, "SET", "cp:test:kept", "before the kill",
                                 (char *)NULL), CP_OK);
    snprintf(path, sizeof(path), "%s/redis", dir);
    assert_true(aof_written(path));

    /* appendfsync everysec: a second later the write is on disk. */
    sleep_ms(1200);
    assert_int_equal(kill(pid, SIGKILL), 0);
    for (int i = 0; i < 500 && !back; i++) {
        pid2 = redisd_pid(rd);
        back = pid2 > 0 && pid2 != pid && redisd_restarts(rd) == 1;
        if (!back)
            sleep_ms(20);
    }
    assert_true(back);
    assert_false(process_exists(pid));

    /* One warning line per restart, naming the old pid and how it ended. */
    rewind(logs);
    while (fgets(line, sizeof(line), logs) != NULL)
        if (strstr(line, "event=redisd.restart") != NULL
            && strstr(line, "status=signal:9") != NULL)
            logged = true;
    assert_true(logged);
    cp_log_set_stream(NULL);
    fclose(logs);

    for (int i = 0; i < 400; i++) {
        if (kv_commandv(k, &r, NULL, "GET", "cp:test:kept", (char *)NULL) == CP_OK)
            break;
        sleep_ms(25);
    }
    assert_non_null(r);
    assert_int_equal(r->type, KV_REPLY_STRING);
    assert_string_equal(r->str, "before the kill");
    kv_reply_free(r);
    kv_destroy(k);

    redisd_stop(rd);
    assert_false(process_exists(pid2));
    remove_tree(dir);
}

static void test_long_data_dir(void **state)
{
    char dir[64];
    char data[256];
    redisd_config cfg = { 0 };
    redisd *rd = NULL;
    cp_error err;
    kv_reply *r = NULL;
    int pid;
    kv *k;

    (void)state;
    make_temp(dir, sizeof(dir));
    snprintf(data, sizeof(data), "%s/a-data-directory-whose-path-is-long-enough-that-its-"
             "socket-path-no-longer-fits-in-a-sockaddr-un", dir);
    assert_true(strlen(data) > 110);
    cfg.data_dir = data;
    cp_error_clear(&err);
    assert_int_equal(redisd_start(&cfg, &rd, &err), CP_OK);
    assert_int_equal(strncmp(redisd_url(rd), "unix:///tmp/cloudpacs-redis-", 28), 0);
    assert_true(strlen(redisd_url(rd)) - 7 < 108);
    pid = redisd_pid(rd);

    k = open_kv(rd);
    assert_int_equal(kv_commandv(k, NULL, NULL, "SET", "cp:test:x", "y", (char *)NULL),
                     CP_OK);
    assert_int_equal(kv_commandv(k, &r, NULL, "GET", "cp:test:x", (char *)NULL), CP_OK);
    assert_string_equal(r->str, "y");
    kv_reply_free(r);
    kv_destroy(k);

    redisd_stop(rd);
    assert_false(process_exists(pid));
    remove_tree(dir);
}

static void test_failures(void **state)
{
    char dir[64];
    char path[128];
    redisd_config cfg = { 0 };
    redisd *rd = (redisd *)1;
    cp_error err;

    (void)state;
    make_temp(dir, sizeof(dir));
    cfg.data_dir = dir;
    cfg.server_path = "/nonexistent/redis-server";
    cp_error_clear(&err);
    assert_int_equal(redisd_start(&cfg, &rd, &err), CP_ERR_NOT_FOUND);
    assert_null(rd);

    /* A "server" that exits at once: the error says so, quoting its log. */
    snprintf(path, sizeof(path), "%s/fake-server", dir);
    {
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        fputs("#!/bin/sh\necho 'fake server: cannot start' >&2\nexit 3\n", f);
        fclose(f);
        chmod(path, 0700);
    }
    cfg.server_path = path;
    cp_error_clear(&err);
    assert_int_equal(redisd_start(&cfg, &rd, &err), CP_ERR_IO);
    assert_null(rd);
    assert_non_null(strstr(err.detail, "exit:3"));
    assert_non_null(strstr(err.detail, "cannot start"));

    cfg.data_dir = NULL;
    assert_int_equal(redisd_start(&cfg, &rd, NULL), CP_ERR_CONFIG);
    redisd_stop(NULL);
    remove_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_persist_restart_stop),
        cmocka_unit_test(test_long_data_dir),
        cmocka_unit_test(test_failures),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * redisd.h - the embedded default's own Redis: when no Redis URL is
 * configured, `cloudpacs serve` starts a `redis-server` of its own, bound to
 * no TCP port, listening on a Unix socket in the data directory
 * (<data_dir>/redis/redis.sock, mode 0700 directory), with append-only
 * persistence (appendfsync everysec) in <data_dir>/redis. A watcher thread
 * restarts it, with back-off, if it dies; redisd_stop asks it to shut down
 * (SHUTDOWN, then SIGTERM, then SIGKILL after REDISD_STOP_TIMEOUT_MS) and
 * waits for it, so that nothing is left behind.
 *
 * The server's configuration is written to <data_dir>/redis/redis.conf on
 * every start; the server runs in the foreground as a child process (not
 * daemonized), its log going to <data_dir>/redis/redis.log.
 *
 * A Unix socket path holds at most 107 bytes. When
 * <data_dir>/redis/redis.sock is longer, the socket is
 * /tmp/cloudpacs-redis-<uid>-<hash>.sock instead, <hash> being the first 16
 * hex digits of the SHA-256 of the redis directory's real path, so that one
 * data directory always gets the same socket; redisd_url names it.
 */
#ifndef CP_KV_REDISD_H
#define CP_KV_REDISD_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"

typedef struct redisd redisd;

typedef struct redisd_config {
    const char *data_dir;           /* the cloudpacs data directory */
    const char *server_path;        /* NULL: "redis-server" from PATH, then /usr/bin */
    unsigned start_timeout_ms;      /* 0: REDISD_START_TIMEOUT_MS */
} redisd_config;

/*
 * Starts the server and waits until it answers PING on its socket.
 * CP_ERR_NOT_FOUND when no redis-server binary is found, CP_ERR_IO when it
 * does not come up in time (the detail then quotes the end of its log).
 */
cp_status redisd_start(const redisd_config *cfg, redisd **out, cp_error *err);

/* The URL that kv_create takes for it: "unix://<data_dir>/redis/redis.sock". */
const char *redisd_url(const redisd *r);

/* The server's process id now (it changes when the watcher restarts it). */
int redisd_pid(const redisd *r);

/* Times the watcher restarted it since redisd_start. */
unsigned redisd_restarts(const redisd *r);

/* Stops the watcher and the server, waits for both, and frees r. NULL is fine. */
void redisd_stop(redisd *r);

#endif

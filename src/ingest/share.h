/*
 * share.h - a folder that files are read from or written to: a local
 * directory, or a folder of a Windows share reached as an SMB2/3 client
 * (libsmbclient; MS-SMB2). The intake reads what devices drop there and the
 * export writes what hospital systems expect there, both through this one
 * small interface, so neither knows which kind of share it talks to.
 *
 * Paths given to the functions are relative to the share's root folder,
 * '/'-separated, without "." or ".." components. A share is used by one
 * thread at a time. After a failure, share_reset drops the connection so
 * that the next call connects again (a server restarted meanwhile).
 */
#ifndef CP_INGEST_SHARE_H
#define CP_INGEST_SHARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct share share;
typedef struct share_file share_file;

/* What names a share; the strings belong to the caller. */
typedef struct share_config {
    const char *url;            /* smb://host[:port]/share/path, file:///path or /path */
    const char *user;           /* SMB only; NULL or "" for guest */
    const char *password;
    const char *domain;         /* the workgroup; NULL or "" for the default */
    int timeout_ms;             /* SMB: per request; 0 for the default */
} share_config;

/* Credentials read from a file in smbclient's format (username=, password=, domain=). */
typedef struct share_credentials {
    char user[256];
    char password[256];
    char domain[256];
} share_credentials;

/* One entry of a folder listing. */
typedef struct share_entry {
    const char *name;           /* the last component */
    bool is_dir;
    uint64_t size;
    int64_t mtime_us;           /* modification time, µs since 1970 UTC */
} share_entry;

/* Called per entry ("." and ".." left out); a status other than CP_OK stops. */
typedef cp_status (*share_list_fn)(void *ctx, const share_entry *entry);

/* Opens (not yet connects) a share. CP_ERR_CONFIG for a URL that is not one. */
cp_status share_open(const share_config *cfg, share **out, cp_error *err);

void share_destroy(share *sh);

/* "smb" or "local". */
const char *share_kind(const share *sh);

/* The URL without credentials, for logs and status. */
const char *share_display(const share *sh);

/* Checks that the root folder can be listed (connecting when needed). */
cp_status share_check(share *sh, cp_error *err);

/* Drops cached connections after a failure. */
void share_reset(share *sh);

/* Lists the folder at path ("" for the root). */
cp_status share_list(share *sh, const char *path, share_list_fn fn, void *ctx, cp_error *err);

/* The size and mtime of a file; CP_ERR_NOT_FOUND when it is gone. */
cp_status share_stat(share *sh, const char *path, share_entry *out, cp_error *err);

/* Opens a file for reading, or creates (truncating) one for writing. */
cp_status share_file_open(share *sh, const char *path, bool write, share_file **out,
                          cp_error *err);

/* Reads up to len bytes; *got is 0 only at the end. */
cp_status share_file_read(share_file *f, void *buf, size_t len, size_t *got, cp_error *err);

cp_status share_file_write(share_file *f, const void *buf, size_t len, cp_error *err);

/* Closes the file; for a written one, the status says whether it all reached the share. */
cp_status share_file_close(share_file *f, cp_error *err);

/* Renames from to to, replacing a file already at to. */
cp_status share_rename(share *sh, const char *from, const char *to, cp_error *err);

/* Removes a file; a file already gone is success. */
cp_status share_unlink(share *sh, const char *path, cp_error *err);

/* Creates the folder at path and its parents, the root too (existing ones are fine). */
cp_status share_mkdirs(share *sh, const char *path, cp_error *err);

/*
 * Reads a credentials file (smbclient -A format): "username = NAME",
 * "password = SECRET", "domain = WORKGROUP"; '#' starts a comment line.
 */
cp_status share_credentials_load(const char *path, share_credentials *out, cp_error *err);

/* Whether a URL names an SMB share (smb://) rather than a local folder. */
bool share_url_is_smb(const char *url);

#endif

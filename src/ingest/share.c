/*
 * share.c - the front of the share module (share.h): parses the URL that
 * names a share, picks the backend (a local folder, share_local.c; an SMB
 * share, share_smb.c) and forwards each call to it. Also reads smbclient's
 * credentials files. SMB URLs follow the smb:// scheme of libsmbclient
 * (smb://host[:port]/share/path); MS-SMB2 is the protocol underneath.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "ingest/share.h"
#include "ingest/share_backend.h"

struct share {
    const share_backend *backend;
    void *impl;
    char display[INGEST_PATH_MAX];
};

struct share_file {
    share *sh;
    void *handle;
};

bool share_url_is_smb(const char *url)
{
    return url != NULL && strncmp(url, "smb://", 6) == 0;
}

/* Splits smb://host[:port]/share[/folder] into its parts, in place. */
static cp_status parse_smb(char *rest, char **host, unsigned *port, char **share_name,
                           char **folder, cp_error *err)
{
    char *slash = strchr(rest, '/');
    char *colon;

    if (strchr(rest, '@') != NULL)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "put SMB credentials in user/password keys, not in the URL");
    if (slash == NULL || slash == rest || slash[1] == '\0')
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "an SMB URL is smb://host[:port]/share[/folder]");
    *slash = '\0';
    *host = rest;
    *share_name = slash + 1;
    *port = 0;
    colon = strrchr(rest, ':');
    if (colon != NULL && strchr(rest, ']') == NULL) {
        char *end;
        long p;

        errno = 0;
        p = strtol(colon + 1, &end, 10);
        if (errno != 0 || end == colon + 1 || *end != '\0' || p < 1 || p > 65535)
            return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                "bad port in SMB URL");
        *colon = '\0';
        *port = (unsigned)p;
    }
    slash = strchr(*share_name, '/');
    *folder = slash != NULL ? slash + 1 : *share_name + strlen(*share_name);
    if (slash != NULL)
        *slash = '\0';
    for (char *f = *folder; *f != '\0'; f++)
        if (f[0] == '/' && f[1] == '\0')
            *f = '\0';
    return CP_OK;
}

cp_status share_open(const share_config *cfg, share **out, cp_error *err)
{
    share *sh;
    char *copy = NULL;
    cp_status st;

    *out = NULL;
    if (cfg->url == NULL || cfg->url[0] == '\0' || strlen(cfg->url) >= INGEST_PATH_MAX)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no share URL or path");
    sh = cp_calloc(1, sizeof *sh);
    copy = cp_strdup(cfg->url);
    if (sh == NULL || copy == NULL) {
        st = CP_ERR_NOMEM;
        goto fail;
    }

    if (share_url_is_smb(cfg->url)) {
        char *host = NULL, *name = NULL, *folder = NULL;
        unsigned port = 0;

        st = parse_smb(copy + 6, &host, &port, &name, &folder, err);
        if (st == CP_OK)
            st = share_smb_create(host, port, name, folder, cfg, &sh->backend, &sh->impl, err);
        snprintf(sh->display, sizeof sh->display, "%s", cfg->url);
    } else {
        const char *path = strncmp(cfg->url, "file://", 7) == 0 ? cfg->url + 7 : cfg->url;

        if (path[0] != '/')
            st = cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                              "a local folder must be an absolute path");
        else
            st = share_local_create(path, &sh->backend, &sh->impl, err);
        snprintf(sh->display, sizeof sh->display, "%s", path);
    }
    if (st != CP_OK)
        goto fail;
    cp_free(copy);
    *out = sh;
    return CP_OK;

fail:
    cp_free(copy);
    cp_free(sh);
    return st;
}

void share_destroy(share *sh)
{
    if (sh == NULL)
        return;
    sh->backend->destroy(sh->impl);
    cp_free(sh);
}

const char *share_kind(const share *sh)
{
    return sh->backend->kind;
}

const char *share_display(const share *sh)
{
    return sh->display;
}

cp_status share_check(share *sh, cp_error *err)
{
    return sh->backend->check(sh->impl, err);
}

void share_reset(share *sh)
{
    sh->backend->reset(sh->impl);
}

cp_status share_list(share *sh, const char *path, share_list_fn fn, void *ctx, cp_error *err)
{
    return sh->backend->list(sh->impl, path, fn, ctx, err);
}

cp_status share_stat(share *sh, const char *path, share_entry *out, cp_error *err)
{
    return sh->backend->stat(sh->impl, path, out, err);
}

cp_status share_file_open(share *sh, const char *path, bool write, share_file **out,
                          cp_error *err)
{
    share_file *f = cp_calloc(1, sizeof *f);
    cp_status st;

    *out = NULL;
    if (f == NULL)
        return CP_ERR_NOMEM;
    st = sh->backend->open(sh->impl, path, write, &f->handle, err);
    if (st != CP_OK) {
        cp_free(f);
        return st;
    }
    f->sh = sh;
    *out = f;
    return CP_OK;
}

cp_status share_file_read(share_file *f, void *buf, size_t len, size_t *got, cp_error *err)
{
    return f->sh->backend->read(f->sh->impl, f->handle, buf, len, got, err);
}

cp_status share_file_write(share_file *f, const void *buf, size_t len, cp_error *err)
{
    return f->sh->backend->write(f->sh->impl, f->handle, buf, len, err);
}

cp_status share_file_close(share_file *f, cp_error *err)
{
    cp_status st;

    if (f == NULL)
        return CP_OK;
    st = f->sh->backend->close(f->sh->impl, f->handle, err);
    cp_free(f);
    return st;
}

cp_status share_rename(share *sh, const char *from, const char *to, cp_error *err)
{
    return sh->backend->rename(sh->impl, from, to, err);
}

cp_status share_unlink(share *sh, const char *path, cp_error *err)
{
    return sh->backend->unlink(sh->impl, path, err);
}

cp_status share_mkdirs(share *sh, const char *path, cp_error *err)
{
    char part[INGEST_PATH_MAX];
    size_t n = strlen(path);
    cp_status st;

    if (n >= sizeof part)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "path too long");
    memcpy(part, path, n + 1);
    /* The root folder first: an export target may not exist yet. */
    st = sh->backend->mkdir(sh->impl, "", err);
    if (st != CP_OK)
        return st;
    for (size_t i = 1; i <= n; i++) {
        if (part[i] != '/' && part[i] != '\0')
            continue;
        part[i] = '\0';
        st = sh->backend->mkdir(sh->impl, part, err);
        if (st != CP_OK)
            return st;
        if (i < n)
            part[i] = '/';
    }
    return CP_OK;
}

/* --- credentials files --------------------------------------------------- */

static char *trim(char *s)
{
    char *end;

    while (isspace((unsigned char)*s))
        s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

static cp_status credentials_line(char *line, share_credentials *out, cp_error *err)
{
    char *eq = strchr(line, '=');
    char *key, *value;
    char *dest;

    line = trim(line);
    if (line[0] == '\0' || line[0] == '#' || line[0] == ';')
        return CP_OK;
    if (eq == NULL)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "credentials file: a line without '='");
    *eq = '\0';
    key = trim(line);
    value = trim(eq + 1);
    if (strcmp(key, "username") == 0)
        dest = out->user;
    else if (strcmp(key, "password") == 0)
        dest = out->password;
    else if (strcmp(key, "domain") == 0)
        dest = out->domain;
    else
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "credentials file: unknown key \"%.32s\"", key);
    if (strlen(value) >= sizeof out->user)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "credentials file: value of %s too long", key);
    memcpy(dest, value, strlen(value) + 1);
    return CP_OK;
}

cp_status share_credentials_load(const char *path, share_credentials *out, cp_error *err)
{
    char text[INGEST_CREDENTIALS_MAX + 1];
    FILE *fp;
    size_t n;
    char *save = NULL;
    cp_status st = CP_OK;

    memset(out, 0, sizeof *out);
    fp = fopen(path, "r");
    if (fp == NULL)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "credentials file %s: %s", path, strerror(errno));
    n = fread(text, 1, sizeof text, fp);
    fclose(fp);
    if (n > INGEST_CREDENTIALS_MAX)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "credentials file %s: larger than %d bytes", path,
                            INGEST_CREDENTIALS_MAX);
    text[n] = '\0';
    for (char *line = strtok_r(text, "\n", &save); line != NULL && st == CP_OK;
         line = strtok_r(NULL, "\n", &save))
        st = credentials_line(line, out, err);
    explicit_bzero(text, sizeof text);
    return st;
}

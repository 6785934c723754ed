/*
 * config.c - INI-style configuration with environment overrides.
 *
 * Syntax: `[section]` headers, `key = value` lines, `#` or `;` comments on
 * their own line, blank lines. Values run to the end of the line with
 * surrounding blanks removed; a value may be wrapped in double quotes to keep
 * blanks. Keys before any section header belong to [core].
 */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/limits.h"

typedef struct config_entry {
    char *section;
    char *key;
    char *value;
} config_entry;

struct cp_config {
    config_entry *entries;
    size_t count;
    size_t cap;
};

static const struct {
    const char *env;
    const char *section;
    const char *key;
} short_names[] = {
    { "CLOUDPACS_DATA_DIR", "core", "data_dir" },
    { "CLOUDPACS_HTTP_PORT", "http", "port" },
    { "CLOUDPACS_DICOM_PORT", "dicom", "port" },
    { "CLOUDPACS_AE_TITLE", "dicom", "ae_title" },
    { "CLOUDPACS_REDIS_URL", "redis", "url" },
    { "CLOUDPACS_DATABASE_URL", "index", "url" },
    { "CLOUDPACS_LOG_LEVEL", "core", "log_level" },
};

cp_config *cp_config_create(void)
{
    return cp_calloc(1, sizeof(cp_config));
}

void cp_config_destroy(cp_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->count; i++) {
        cp_free(cfg->entries[i].section);
        cp_free(cfg->entries[i].key);
        cp_free(cfg->entries[i].value);
    }
    cp_free(cfg->entries);
    cp_free(cfg);
}

static config_entry *config_find(const cp_config *cfg, const char *section, const char *key)
{
    for (size_t i = 0; i < cfg->count; i++) {
        if (strcmp(cfg->entries[i].section, section) == 0 &&
            strcmp(cfg->entries[i].key, key) == 0)
            return &cfg->entries[i];
    }
    return NULL;
}

cp_status cp_config_set(cp_config *cfg, const char *section, const char *key,
                        const char *value)
{
    config_entry *entry = config_find(cfg, section, key);
    char *copy;

    if (entry != NULL) {
        copy = cp_strdup(value);
        if (copy == NULL)
            return CP_ERR_NOMEM;
        cp_free(entry->value);
        entry->value = copy;
        return CP_OK;
    }

    if (cfg->count == cfg->cap) {
        size_t cap = cfg->cap == 0 ? 16 : cfg->cap * 2;
        config_entry *grown = cp_realloc(cfg->entries, cap * sizeof *grown);

        if (grown == NULL)
            return CP_ERR_NOMEM;
        cfg->entries = grown;
        cfg->cap = cap;
    }

    entry = &cfg->entries[cfg->count];
    entry->section = cp_strdup(section);
    entry->key = cp_strdup(key);
    entry->value = cp_strdup(value);
    if (entry->section == NULL || entry->key == NULL || entry->value == NULL) {
        cp_free(entry->section);
        cp_free(entry->key);
        cp_free(entry->value);
        return CP_ERR_NOMEM;
    }
    cfg->count++;
    return CP_OK;
}

static void trim(const char **start, const char **end)
{
    while (*start < *end && isspace((unsigned char)**start))
        (*start)++;
    while (*end > *start && isspace((unsigned char)(*end)[-1]))
        (*end)--;
}

static int is_name(const char *s, const char *end)
{
    if (s == end)
        return 0;
    for (; s < end; s++) {
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
            return 0;
    }
    return 1;
}

static cp_status config_parse_line(cp_config *cfg, const char *line, const char *end,
                                   char *section, size_t lineno, cp_error *err)
{
    const char *eq, *kend, *vstart;
    char key[CP_CONFIG_NAME_MAX + 1], value[CP_CONFIG_VALUE_MAX + 1];
    size_t klen, vlen;

    trim(&line, &end);
    if (line == end || *line == '#' || *line == ';')
        return CP_OK;

    if (*line == '[') {
        if (end[-1] != ']' || !is_name(line + 1, end - 1) ||
            (size_t)(end - line - 2) > CP_CONFIG_NAME_MAX)
            return cp_error_set(err, CP_ERR_CONFIG, (int64_t)lineno, CP_ERROR_NO_TAG,
                                "line %zu: bad section header", lineno);
        memcpy(section, line + 1, (size_t)(end - line - 2));
        section[end - line - 2] = '\0';
        return CP_OK;
    }

    eq = memchr(line, '=', (size_t)(end - line));
    if (eq == NULL)
        return cp_error_set(err, CP_ERR_CONFIG, (int64_t)lineno, CP_ERROR_NO_TAG,
                            "line %zu: expected key = value", lineno);
    kend = eq;
    vstart = eq + 1;
    trim(&line, &kend);
    trim(&vstart, &end);
    klen = (size_t)(kend - line);
    if (!is_name(line, kend) || klen > CP_CONFIG_NAME_MAX)
        return cp_error_set(err, CP_ERR_CONFIG, (int64_t)lineno, CP_ERROR_NO_TAG,
                            "line %zu: bad key", lineno);
    if (end - vstart >= 2 && *vstart == '"' && end[-1] == '"') {
        vstart++;
        end--;
    }
    vlen = (size_t)(end - vstart);
    if (vlen > CP_CONFIG_VALUE_MAX)
        return cp_error_set(err, CP_ERR_CONFIG, (int64_t)lineno, CP_ERROR_NO_TAG,
                            "line %zu: value longer than %d bytes", lineno,
                            CP_CONFIG_VALUE_MAX);

    memcpy(key, line, klen);
    key[klen] = '\0';
    memcpy(value, vstart, vlen);
    value[vlen] = '\0';
    return cp_config_set(cfg, section, key, value);
}

cp_status cp_config_parse(const char *text, size_t len, cp_config **out, cp_error *err)
{
    char section[CP_CONFIG_NAME_MAX + 1] = "core";
    const char *p = text, *end = text + len;
    size_t lineno = 0;
    cp_config *cfg = cp_config_create();
    cp_status st = CP_OK;

    *out = NULL;
    if (cfg == NULL)
        return CP_ERR_NOMEM;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl != NULL ? nl : end;

        lineno++;
        st = config_parse_line(cfg, p, line_end, section, lineno, err);
        if (st != CP_OK)
            goto fail;
        p = nl != NULL ? nl + 1 : end;
    }

    *out = cfg;
    return CP_OK;

fail:
    cp_config_destroy(cfg);
    return st;
}

cp_status cp_config_load(const char *path, cp_config **out, cp_error *err)
{
    FILE *f;
    char *text = NULL;
    long size;
    cp_status st;

    *out = NULL;
    f = fopen(path, "rb");
    if (f == NULL)
        return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "open \"%s\" failed: %s", path, strerror(errno));

    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        st = cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "read \"%s\" failed", path);
        goto done;
    }
    if (size > CP_CONFIG_FILE_MAX) {
        st = cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "\"%s\" is larger than %d bytes", path, CP_CONFIG_FILE_MAX);
        goto done;
    }
    text = cp_malloc((size_t)size + 1);
    if (text == NULL) {
        st = CP_ERR_NOMEM;
        goto done;
    }
    if (fread(text, 1, (size_t)size, f) != (size_t)size) {
        st = cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "read \"%s\" failed", path);
        goto done;
    }
    st = cp_config_parse(text, (size_t)size, out, err);

done:
    cp_free(text);
    fclose(f);
    return st;
}

static const char *config_env(const char *section, const char *key)
{
    char name[2 * CP_CONFIG_NAME_MAX + 16];
    size_t n = 0;
    const char *value;

    n = (size_t)snprintf(name, sizeof name, "CLOUDPACS_%s_%s", section, key);
    if (n >= sizeof name)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        name[i] = (c == '-' || c == '.') ? '_' : (char)toupper(c);
    }
    value = getenv(name);
    if (value != NULL)
        return value;

    for (size_t i = 0; i < sizeof short_names / sizeof short_names[0]; i++) {
        if (strcmp(short_names[i].section, section) == 0 &&
            strcmp(short_names[i].key, key) == 0)
            return getenv(short_names[i].env);
    }
    return NULL;
}

const char *cp_config_get(const cp_config *cfg, const char *section, const char *key,
                          const char *fallback)
{
    const char *value = config_env(section, key);
    const config_entry *entry;

    if (value != NULL)
        return value;
    if (cfg != NULL) {
        entry = config_find(cfg, section, key);
        if (entry != NULL)
            return entry->value;
    }
    return fallback;
}

cp_status cp_config_get_int(const cp_config *cfg, const char *section, const char *key,
                            int64_t fallback, int64_t min, int64_t max, int64_t *out,
                            cp_error *err)
{
    const char *text = cp_config_get(cfg, section, key, NULL);
    char *end;
    long long value;

    if (text == NULL) {
        *out = fallback;
        return CP_OK;
    }
    errno = 0;
    value = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "%s.%s = \"%s\" is not an integer in [%lld, %lld]", section,
                            key, text, (long long)min, (long long)max);
    *out = value;
    return CP_OK;
}

cp_status cp_config_get_bool(const cp_config *cfg, const char *section, const char *key,
                             bool fallback, bool *out, cp_error *err)
{
    static const char *const yes[] = { "true", "yes", "on", "1" };
    static const char *const no[] = { "false", "no", "off", "0" };
    const char *text = cp_config_get(cfg, section, key, NULL);

    if (text == NULL) {
        *out = fallback;
        return CP_OK;
    }
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return CP_OK;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return CP_OK;
        }
    }
    return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "%s.%s = \"%s\" is not a boolean", section, key, text);
}

const char *cp_config_section_at(const cp_config *cfg, size_t index)
{
    size_t seen = 0;

    if (cfg == NULL)
        return NULL;
    for (size_t i = 0; i < cfg->count; i++) {
        const char *name = cfg->entries[i].section;
        bool first = true;

        for (size_t j = 0; j < i && first; j++)
            first = strcmp(cfg->entries[j].section, name) != 0;
        if (!first)
            continue;
        if (seen == index)
            return name;
        seen++;
    }
    return NULL;
}

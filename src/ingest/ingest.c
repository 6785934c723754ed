/*
 * ingest.c - the intake and export service (ingest.h): reads the
 * [intake.*] and [export.*] sections, runs one thread per source and per
 * rule, and answers the status from the ledger tables (ledger.h) merged
 * with what the running threads know.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "ingest/export.h"
#include "ingest/ingest.h"
#include "ingest/intake.h"
#include "ingest/ledger.h"

struct ingest_service {
    intake *sources[INGEST_SOURCES_MAX];
    pthread_t source_threads[INGEST_SOURCES_MAX];
    size_t source_count;
    size_t sources_started;
    export_rule *rules[INGEST_EXPORTS_MAX];
    pthread_t rule_threads[INGEST_EXPORTS_MAX];
    size_t rule_count;
    size_t rules_started;
    ledger *status_lg;                  /* the status's own connection */
    pthread_mutex_t status_lock;
};

static bool is_section(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);

    return strncmp(name, prefix, n) == 0 && name[n] != '\0';
}

bool ingest_configured(const cp_config *cfg)
{
    const char *name;

    for (size_t i = 0; (name = cp_config_section_at(cfg, i)) != NULL; i++)
        if (is_section(name, "intake.") || is_section(name, "export."))
            return true;
    return false;
}

static cp_status open_status_ledger(const char *data_dir, ledger **out, cp_error *err)
{
    char path[INGEST_PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/index.sqlite", data_dir);

    if (n < 0 || (size_t)n >= sizeof path)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "data directory path too long");
    return ledger_open(path, out, err);
}

static cp_status add_section(ingest_service *s, const ingest_env *env, const char *name,
                             cp_error *err)
{
    if (is_section(name, "intake.")) {
        if (s->source_count == INGEST_SOURCES_MAX)
            return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                "more than %d [intake.*] sections", INGEST_SOURCES_MAX);
        return intake_create(env, name, &s->sources[s->source_count++], err);
    }
    if (is_section(name, "export.")) {
        if (s->rule_count == INGEST_EXPORTS_MAX)
            return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                "more than %d [export.*] sections", INGEST_EXPORTS_MAX);
        return export_create(env, name, &s->rules[s->rule_count++], err);
    }
    return CP_OK;
}

cp_status ingest_create(const ingest_env *env, ingest_service **out, cp_error *err)
{
    ingest_service *s = cp_calloc(1, sizeof *s);
    const char *name;
    cp_status st;

    *out = NULL;
    if (s == NULL)
        return CP_ERR_NOMEM;
    pthread_mutex_init(&s->status_lock, NULL);
    st = open_status_ledger(env->data_dir, &s->status_lg, err);
    for (size_t i = 0; st == CP_OK && (name = cp_config_section_at(env->cfg, i)) != NULL; i++) {
        st = add_section(s, env, name, err);
        /* A failed create left a NULL in its slot. */
        if (st != CP_OK && is_section(name, "intake."))
            s->source_count--;
        else if (st != CP_OK && is_section(name, "export."))
            s->rule_count--;
    }
    if (st != CP_OK) {
        ingest_destroy(s);
        return st;
    }
    *out = s;
    return CP_OK;
}

cp_status ingest_start(ingest_service *s, cp_error *err)
{
    for (; s->sources_started < s->source_count; s->sources_started++)
        if (pthread_create(&s->source_threads[s->sources_started], NULL, intake_run,
                           s->sources[s->sources_started]) != 0)
            goto fail;
    for (; s->rules_started < s->rule_count; s->rules_started++)
        if (pthread_create(&s->rule_threads[s->rules_started], NULL, export_run,
                           s->rules[s->rules_started]) != 0)
            goto fail;
    return CP_OK;

fail:
    ingest_stop(s);
    return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "cannot start an intake or export thread");
}

void ingest_stop(ingest_service *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->sources_started; i++)
        intake_stop(s->sources[i]);
    for (size_t i = 0; i < s->rules_started; i++)
        export_stop(s->rules[i]);
    for (size_t i = 0; i < s->sources_started; i++)
        pthread_join(s->source_threads[i], NULL);
    for (size_t i = 0; i < s->rules_started; i++)
        pthread_join(s->rule_threads[i], NULL);
    s->sources_started = 0;
    s->rules_started = 0;
}

void ingest_destroy(ingest_service *s)
{
    if (s == NULL)
        return;
    ingest_stop(s);
    for (size_t i = 0; i < s->source_count; i++)
        intake_destroy(s->sources[i]);
    for (size_t i = 0; i < s->rule_count; i++)
        export_destroy(s->rules[i]);
    ledger_close(s->status_lg);
    pthread_mutex_destroy(&s->status_lock);
    cp_free(s);
}

size_t ingest_source_count(const ingest_service *s)
{
    return s->source_count;
}

size_t ingest_rule_count(const ingest_service *s)
{
    return s->rule_count;
}

/* The object named name in list, appended with zero counts when missing. */
static json_t *entry_named(json_t *list, const char *name, bool source)
{
    static const char *const source_counts[] = {
        "seen", "stored", "duplicates", "failed", "skipped",
    };
    static const char *const rule_counts[] = { "position", "pending", "done", "retrying" };
    size_t i;
    json_t *o;

    json_array_foreach(list, i, o) {
        const char *n = json_string_value(json_object_get(o, "name"));

        if (n != NULL && strcmp(n, name) == 0)
            return o;
    }
    o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "name", json_string(name));
    if (source) {
        for (i = 0; i < sizeof source_counts / sizeof source_counts[0]; i++)
            json_object_set_new(o, source_counts[i], json_integer(0));
        json_object_set_new(o, "last_success", json_null());
    } else {
        for (i = 0; i < sizeof rule_counts / sizeof rule_counts[0]; i++)
            json_object_set_new(o, rule_counts[i], json_integer(0));
        json_object_set_new(o, "jobs", json_array());
    }
    json_array_append_new(list, o);
    return o;
}

cp_status ingest_status_json(ingest_service *s, json_t **out, cp_error *err)
{
    json_t *root = NULL;
    json_t *sources, *exports;
    cp_status st;

    pthread_mutex_lock(&s->status_lock);
    st = ledger_status_json(s->status_lg, &root, err);
    pthread_mutex_unlock(&s->status_lock);
    if (st != CP_OK)
        return st;
    sources = json_object_get(root, "sources");
    exports = json_object_get(root, "exports");
    for (size_t i = 0; i < s->source_count; i++) {
        json_t *o = entry_named(sources, intake_name(s->sources[i]), true);

        if (o != NULL)
            intake_status(s->sources[i], o);
    }
    for (size_t i = 0; i < s->rule_count; i++) {
        json_t *o = entry_named(exports, export_name(s->rules[i]), false);

        if (o != NULL)
            export_status(s->rules[i], o);
    }
    *out = root;
    return CP_OK;
}

cp_status ingest_status_read(const char *data_dir, json_t **out, cp_error *err)
{
    ledger *lg = NULL;
    cp_status st = open_status_ledger(data_dir, &lg, err);

    if (st == CP_OK)
        st = ledger_status_json(lg, out, err);
    ledger_close(lg);
    return st;
}

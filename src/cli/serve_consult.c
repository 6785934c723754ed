/*
 * serve_consult.c - remote reading inside `cloudpacs serve`
 * (serve_consult.h): opens the order and report stores, the dispatch
 * engine and the event hub, runs the engine's timers, tells DICOMweb which
 * studies an order opens, and makes the automatic orders.
 *
 * Automatic orders follow the index's change log (index.h): every
 * INDEX_CHANGE_STUDY_COMPLETE that archive/completion.h puts there is
 * checked against the [order_rule.*] sections. The position read up to is
 * kept in Redis (consult:rules:pos), so a restart goes on where it was and
 * a first start begins at the log's end; a study read twice (two servers)
 * still gets one order, since an order is refused for a study that has an
 * open one.
 */
#include "cli/serve_consult.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "consult/dispatch.h"
#include "consult/events.h"
#include "consult/order.h"
#include "consult/report.h"
#include "core/alloc.h"
#include "core/limits.h"
#include "core/log.h"
#include "dicomweb/dicomweb.h"

#define SERVE_CONSULT_PATH_MAX 4200

/* One [order_rule.NAME] section. */
typedef struct order_rule {
    char name[64];
    char institution[DIRECTORY_CODE_MAX + 1];
    char modalities[DIRECTORY_LIST_MAX + 1];    /* "" any */
    order_priority priority;
    char body_part[INDEX_CS_MAX + 1];
} order_rule;

struct serve_consult {
    serve_consult_config cc;
    char db_path[SERVE_CONSULT_PATH_MAX];
    order_store *orders;
    report_store *reports;
    events_hub *events;
    dispatch *disp;
    bool dispatch_started;
    order_rule rules[CONSULT_RULES_MAX];
    size_t rule_count;
    pthread_t rules_thread;
    bool rules_started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
    int64_t position;                   /* the change log read up to */
};

bool serve_consult_dispatch_wanted(const char *services)
{
    char copy[256];
    char *save = NULL;

    if (services == NULL)
        return true;
    snprintf(copy, sizeof copy, "%s", services);
    for (char *tok = strtok_r(copy, ", ", &save); tok != NULL;
         tok = strtok_r(NULL, ", ", &save))
        if (strcmp(tok, "dispatch") == 0 || strcmp(tok, "all") == 0)
            return true;
    return false;
}

static int consult_fail(const char *what, const cp_error *err)
{
    char text[CP_ERROR_DETAIL_MAX + 64];

    fprintf(stderr, "cloudpacs serve: %s: %s\n", what, cp_error_format(err, text, sizeof text));
    return CLI_EXIT_FAILURE;
}

/* --- the rules ---------------------------------------------------------------- */

static int read_rule(const cp_config *cfg, const char *section, order_rule *r)
{
    const char *prio = cp_config_get(cfg, section, "priority", "routine");
    int p = order_priority_parse(prio);

    memset(r, 0, sizeof(*r));
    snprintf(r->name, sizeof(r->name), "%s", section + strlen("order_rule."));
    snprintf(r->institution, sizeof(r->institution), "%s",
             cp_config_get(cfg, section, "institution", ""));
    snprintf(r->modalities, sizeof(r->modalities), "%s",
             cp_config_get(cfg, section, "modality", ""));
    snprintf(r->body_part, sizeof(r->body_part), "%s",
             cp_config_get(cfg, section, "body_part", ""));
    if (r->institution[0] == '\0' || p < 0) {
        fprintf(stderr, "cloudpacs serve: [%s]: institution is required, priority is "
                "routine or urgent\n", section);
        return CLI_EXIT_CONFIG;
    }
    r->priority = (order_priority)p;
    return CLI_EXIT_OK;
}

static int read_rules(serve_consult *c)
{
    const char *name;

    for (size_t i = 0; (name = cp_config_section_at(c->cc.cfg, i)) != NULL; i++) {
        int rc;

        if (strncmp(name, "order_rule.", 11) != 0 || name[11] == '\0')
            continue;
        if (c->rule_count == CONSULT_RULES_MAX) {
            fprintf(stderr, "cloudpacs serve: more than %d [order_rule.*] sections\n",
                    CONSULT_RULES_MAX);
            return CLI_EXIT_CONFIG;
        }
        rc = read_rule(c->cc.cfg, name, &c->rules[c->rule_count]);
        if (rc != CLI_EXIT_OK)
            return rc;
        c->rule_count++;
    }
    return CLI_EXIT_OK;
}

/* Whether modality is in the comma-separated list ("" matches any). */
static bool list_has(const char *list, const char *modality)
{
    size_t n = strlen(modality);

    if (list[0] == '\0')
        return true;
    for (const char *p = list; *p;) {
        size_t len;

        p += strspn(p, ", ");
        len = strcspn(p, ", ");
        if (len == n && len > 0 && strncmp(p, modality, n) == 0)
            return true;
        p += len;
    }
    return false;
}

/* --- automatic orders ----------------------------------------------------------- */

typedef struct study_facts {
    bool found;
    int64_t institution_id;
    char modalities[INDEX_MODALITIES_MAX + 1];
    char patient_id[INDEX_LO_MAX + 1];
    char issuer[INDEX_LO_MAX + 1];
    char accession[INDEX_SH_MAX + 1];
} study_facts;

static cp_status on_study(void *ctx, const index_row *row)
{
    study_facts *s = ctx;

    s->found = true;
    s->institution_id = row->institution_id;
    memcpy(s->modalities, row->modalities_in_study, sizeof(s->modalities));
    memcpy(s->patient_id, row->rec.patient.id, sizeof(s->patient_id));
    memcpy(s->issuer, row->rec.patient.issuer, sizeof(s->issuer));
    memcpy(s->accession, row->rec.study.accession, sizeof(s->accession));
    return CP_ERR_STOPPED;
}

/* The first of ModalitiesInStudy that is not SR, PR or KO. */
static void main_modality(const char *list, char *out, size_t cap)
{
    const char *m = list;

    out[0] = '\0';
    while (*m) {
        size_t n = strcspn(m, "\\");

        if (n > 0 && n < cap && strncmp(m, "SR", n) != 0 && strncmp(m, "PR", n) != 0 &&
            strncmp(m, "KO", n) != 0) {
            memcpy(out, m, n);
            out[n] = '\0';
            return;
        }
        m += n;
        if (*m == '\\')
            m++;
    }
}

static void make_order(serve_consult *c, const order_rule *r, const index_change *ch,
                       const study_facts *s, const char *modality)
{
    order o;
    cp_error err;
    cp_status st;

    memset(&o, 0, sizeof(o));
    snprintf(o.study_uid, sizeof(o.study_uid), "%s", ch->study_uid);
    memcpy(o.patient_id, s->patient_id, sizeof(o.patient_id));
    memcpy(o.issuer, s->issuer, sizeof(o.issuer));
    memcpy(o.accession, s->accession, sizeof(o.accession));
    snprintf(o.modality, sizeof(o.modality), "%s", modality);
    snprintf(o.body_part, sizeof(o.body_part), "%s", r->body_part);
    o.priority = r->priority;
    o.requesting_id = s->institution_id;
    cp_error_clear(&err);
    st = dispatch_submit(c->disp, &o, &err);
    if (st == CP_OK)
        cp_log_info("consult.auto_order", "rule=%s order=%" PRId64 " modality=%s", r->name,
                    o.id, o.modality);
    else if (st != CP_ERR_EXISTS)
        cp_log_warn("consult.auto_order_failed", "rule=%s detail=\"%s\"", r->name,
                    err.detail);
}

static cp_status on_change(void *ctx, const index_change *ch)
{
    serve_consult *c = ctx;
    index_term term = { "StudyInstanceUID", ch->study_uid };
    index_query_spec spec;
    study_facts s;
    char modality[INDEX_CS_MAX + 1];

    c->position = ch->seq;
    if (ch->kind != INDEX_CHANGE_STUDY_COMPLETE)
        return CP_OK;
    memset(&s, 0, sizeof(s));
    memset(&spec, 0, sizeof(spec));
    spec.level = INDEX_LEVEL_STUDY;
    spec.terms = &term;
    spec.term_count = 1;
    spec.limit = 1;
    if (index_query(c->cc.idx, &spec, on_study, &s, NULL) != CP_OK || !s.found)
        return CP_OK;
    main_modality(s.modalities, modality, sizeof(modality));

    for (size_t i = 0; i < c->rule_count; i++) {
        const order_rule *r = &c->rules[i];
        directory_institution inst;
        cp_error err;

        cp_error_clear(&err);
        if (directory_institution_by_code(c->cc.dir, r->institution, &inst, &err) != CP_OK ||
            inst.id != s.institution_id || !list_has(r->modalities, modality))
            continue;
        make_order(c, r, ch, &s, modality);
        break;
    }
    return CP_OK;
}

static void save_position(serve_consult *c)
{
    char key[KV_KEY_MAX], value[24];
    cp_error err;

    cp_error_clear(&err);
    snprintf(value, sizeof(value), "%" PRId64, c->position);
    if (kv_key(c->cc.kv, key, sizeof(key), "consult:rules:pos", NULL) == CP_OK)
        kv_commandv(c->cc.kv, NULL, &err, "SET", key, value, (const char *)NULL);
}

/* Where to begin: the kept position, else the end of the log now. */
static void load_position(serve_consult *c)
{
    char key[KV_KEY_MAX];
    kv_reply *r = NULL;
    cp_error err;

    cp_error_clear(&err);
    if (kv_key(c->cc.kv, key, sizeof(key), "consult:rules:pos", NULL) == CP_OK &&
        kv_commandv(c->cc.kv, &r, &err, "GET", key, (const char *)NULL) == CP_OK &&
        r->type == KV_REPLY_STRING) {
        c->position = strtoll(r->str, NULL, 10);
        kv_reply_free(r);
        return;
    }
    kv_reply_free(r);
    if (index_last_change(c->cc.idx, &c->position, &err) != CP_OK)
        c->position = 0;
}

static void *rules_main(void *arg)
{
    serve_consult *c = arg;

    load_position(c);
    pthread_mutex_lock(&c->lock);
    while (!c->stop) {
        struct timespec until;
        int64_t before = c->position;
        cp_error err;

        pthread_mutex_unlock(&c->lock);
        cp_error_clear(&err);
        if (index_changes_since(c->cc.idx, c->position, CONSULT_CHANGES_PAGE, on_change, c,
                                &err) != CP_OK)
            cp_log_warn("consult.rules_failed", "detail=\"%s\"", err.detail);
        if (c->position != before)
            save_position(c);

        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += 500 * 1000000L;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&c->lock);
        while (!c->stop && c->position == before &&
               pthread_cond_timedwait(&c->wake, &c->lock, &until) == 0)
            continue;
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static int start_rules(serve_consult *c)
{
    pthread_condattr_t ca;

    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&c->lock, NULL);
    if (pthread_create(&c->rules_thread, NULL, rules_main, c) != 0) {
        pthread_cond_destroy(&c->wake);
        pthread_mutex_destroy(&c->lock);
        fprintf(stderr, "cloudpacs serve: cannot start the automatic orders thread\n");
        return CLI_EXIT_FAILURE;
    }
    c->rules_started = true;
    cp_log_info("consult.rules", "rules=%zu", c->rule_count);
    return CLI_EXIT_OK;
}

static void stop_rules(serve_consult *c)
{
    if (!c->rules_started)
        return;
    pthread_mutex_lock(&c->lock);
    c->stop = true;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->rules_thread, NULL);
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->lock);
    c->rules_started = false;
}

/* --- opening and closing ----------------------------------------------------------- */

static int open_stores(serve_consult *c)
{
    char key_path[SERVE_CONSULT_PATH_MAX];
    report_config rc;
    events_config ec = { c->cc.kv, c->cc.dir };
    cp_error err;

    cp_error_clear(&err);
    snprintf(c->db_path, sizeof(c->db_path), "%s/index.sqlite", c->cc.data_dir);
    snprintf(key_path, sizeof(key_path), "%s/report-signing.key", c->cc.data_dir);
    if (order_store_open_sqlite(c->db_path, &c->orders, &err) != CP_OK)
        return consult_fail("order store", &err);
    memset(&rc, 0, sizeof(rc));
    rc.orders = c->orders;
    rc.kv = c->cc.kv;
    rc.db_path = c->db_path;
    rc.key_path = key_path;
    if (report_store_open(&rc, &c->reports, &err) != CP_OK)
        return consult_fail("report store", &err);
    if (events_hub_create(&ec, &c->events, &err) != CP_OK)
        return consult_fail("event hub", &err);
    return CLI_EXIT_OK;
}

static void on_repair(void *ctx, int64_t order_id, const char *what, const cp_error *err)
{
    (void)ctx;
    if (err != NULL)
        cp_log_warn("consult.report_repair_failed", "order=%" PRId64 " detail=\"%s\"",
                    order_id, err->detail);
    else
        cp_log_warn("consult.report_repaired", "order=%" PRId64 " action=%s", order_id, what);
}

/*
 * A crash between an order's move and its report version's write leaves
 * the order ahead (report.h, report_repair): put right before the engine
 * runs, by the process that runs it.
 */
static void repair_reports(serve_consult *c)
{
    size_t repaired = 0;
    cp_error err;

    cp_error_clear(&err);
    if (report_repair(c->reports, on_repair, c, &repaired, &err) != CP_OK)
        cp_log_warn("consult.report_repair_failed", "detail=\"%s\"", err.detail);
    else if (repaired > 0)
        cp_log_info("consult.report_repair", "orders=%zu", repaired);
}

static int open_dispatch(serve_consult *c)
{
    dispatch_config dc;
    cp_error err;

    cp_error_clear(&err);
    memset(&dc, 0, sizeof(dc));
    if (dispatch_rules_from_config(c->cc.cfg, &dc.rules, &err) != CP_OK) {
        consult_fail("[dispatch]", &err);
        return CLI_EXIT_CONFIG;
    }
    dc.kv = c->cc.kv;
    dc.orders = c->orders;
    dc.dir = c->cc.dir;
    dc.on_event = events_on_dispatch;
    dc.event_ctx = c->events;
    if (dispatch_create(&dc, &c->disp, &err) != CP_OK)
        return consult_fail("dispatch", &err);
    events_hub_set_dispatch(c->events, c->disp);
    if (events_start(c->events, &err) != CP_OK)
        return consult_fail("event hub", &err);
    if (!c->cc.run_dispatch)
        return CLI_EXIT_OK;
    repair_reports(c);
    if (dispatch_start(c->disp, &err) != CP_OK)
        return consult_fail("dispatch timers", &err);
    c->dispatch_started = true;
    return CLI_EXIT_OK;
}

int serve_consult_open(const serve_consult_config *cc, serve_consult **out)
{
    serve_consult *c;
    int rc;

    *out = NULL;
    c = cp_calloc(1, sizeof(*c));
    if (!c)
        return CLI_EXIT_FAILURE;
    c->cc = *cc;
    rc = read_rules(c);
    if (rc == CLI_EXIT_OK)
        rc = open_stores(c);
    if (rc == CLI_EXIT_OK)
        rc = open_dispatch(c);
    if (rc == CLI_EXIT_OK && cc->run_dispatch && c->rule_count > 0)
        rc = start_rules(c);
    if (rc != CLI_EXIT_OK) {
        serve_consult_close(c);
        return rc;
    }
    cp_log_info("consult.ready", "dispatch=%s rules=%zu",
                c->dispatch_started ? "running" : "elsewhere", c->rule_count);
    *out = c;
    return CLI_EXIT_OK;
}

void serve_consult_close(serve_consult *c)
{
    if (!c)
        return;
    stop_rules(c);
    if (c->dispatch_started)
        dispatch_stop(c->disp);
    events_stop(c->events);
    dispatch_destroy(c->disp);
    events_hub_destroy(c->events);
    report_store_close(c->reports);
    order_store_close(c->orders);
    cp_free(c);
}

void serve_consult_fill_api(serve_consult *c, api_config *ac)
{
    ac->disp = c->disp;
    ac->orders = c->orders;
    ac->reports = c->reports;
    ac->events = c->events;
    ac->arc = c->cc.arc;
    ac->db_path = c->db_path;
}

/* --- what an order opens ------------------------------------------------------------- */

typedef struct gate_find {
    bool found;
    order o;
} gate_find;

static cp_status gate_one(void *ctx, const order *o)
{
    gate_find *g = ctx;

    g->found = true;
    g->o = *o;
    return CP_ERR_STOPPED;
}

static bool own_institution(const principal *p, int64_t id)
{
    for (size_t i = 0; i < p->own_grant_count && i < p->grant_count; i++)
        if (p->grants[i].institution_id == id)
            return true;
    return p->institution_id == id;
}

int serve_consult_order_gate(void *ctx, const principal *p, const char *study_uid)
{
    static const order_state open_states[] = {
        ORDER_SUBMITTED, ORDER_POOLED, ORDER_OFFERED, ORDER_CLAIMED,
        ORDER_REPORTED, ORDER_RETURNED, ORDER_APPROVED,
    };
    serve_consult *c = ctx;
    order_filter f;
    gate_find g;
    const order *o = &g.o;
    cp_error err;

    memset(&f, 0, sizeof(f));
    memset(&g, 0, sizeof(g));
    f.states = open_states;
    f.state_count = sizeof(open_states) / sizeof(open_states[0]);
    f.study_uid = study_uid;
    f.limit = 1;
    cp_error_clear(&err);
    if (order_list(c->orders, &f, gate_one, &g, &err) != CP_OK && !g.found)
        return DWEB_ORDER_NONE;
    if (!g.found)
        return DWEB_ORDER_NONE;
    if (p->kind != PRINCIPAL_USER)
        return DWEB_ORDER_NONE;
    if (o->doctor_id == p->id &&
        (o->state == ORDER_OFFERED || o->state == ORDER_CLAIMED ||
         o->state == ORDER_REPORTED || o->state == ORDER_RETURNED))
        return DWEB_ORDER_OPENS;
    if (o->state == ORDER_POOLED && dispatch_eligible(c->disp, p, o))
        return DWEB_ORDER_OPENS;
    if ((p->roles & ROLE_REVIEWER) && o->reading_id != 0 && own_institution(p, o->reading_id) &&
        (o->state == ORDER_REPORTED || o->state == ORDER_APPROVED))
        return DWEB_ORDER_OPENS;
    return DWEB_ORDER_CLOSES;
}

typedef struct studies_find {
    const principal *p;
    bool reviewer;                      /* the reviewer's queue, not held orders */
    char (*uids)[INDEX_UID_MAX + 1];
    size_t cap;
    size_t count;
} studies_find;

static cp_status studies_one(void *ctx, const order *o)
{
    studies_find *s = ctx;

    if (s->count == s->cap)
        return CP_ERR_STOPPED;
    if (s->reviewer && !own_institution(s->p, o->reading_id))
        return CP_OK;
    snprintf(s->uids[s->count++], INDEX_UID_MAX + 1, "%s", o->study_uid);
    return CP_OK;
}

/*
 * What serve_consult_order_gate opens, listed: the orders p holds or is
 * offered, then (a reviewer) those of its centre awaiting review or
 * release. Pooled orders need no list: eligibility needs a contract,
 * which the policy's scope has already.
 */
size_t serve_consult_order_studies(void *ctx, const principal *p,
                                   char (*uids)[INDEX_UID_MAX + 1], size_t cap)
{
    static const order_state held[] = {
        ORDER_OFFERED, ORDER_CLAIMED, ORDER_REPORTED, ORDER_RETURNED,
    };
    static const order_state review[] = { ORDER_REPORTED, ORDER_APPROVED };
    serve_consult *c = ctx;
    studies_find s = { p, false, uids, cap, 0 };
    order_filter f;
    cp_error err;

    if (p->kind != PRINCIPAL_USER || p->id == 0)
        return 0;
    memset(&f, 0, sizeof(f));
    f.states = held;
    f.state_count = sizeof(held) / sizeof(held[0]);
    f.doctor_id = p->id;
    f.limit = cap;
    cp_error_clear(&err);
    order_list(c->orders, &f, studies_one, &s, &err);
    if (!(p->roles & ROLE_REVIEWER) || s.count == cap)
        return s.count;

    memset(&f, 0, sizeof(f));
    f.states = review;
    f.state_count = sizeof(review) / sizeof(review[0]);
    f.limit = CONSULT_REVIEW_SCAN;
    s.reviewer = true;
    order_list(c->orders, &f, studies_one, &s, &err);
    return s.count;
}

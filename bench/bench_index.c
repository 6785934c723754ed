/*
 * bench_index.c - the metadata index at scale: fills an SQLite index with N
 * synthetic instances (1,000,000 in 10,000 studies by default) and times the
 * study-level searches QIDO-RS and C-FIND make (PS3.18 10.6, PS3.4 C.6).
 *
 *   bench_index [--tiny] [--instances N] [--per-study N] [--runs N] [--keep PATH]
 *               [--reuse]
 *
 * --keep leaves the index at PATH; --reuse times the queries on an index
 * such a run kept (same --instances and --per-study), without filling it.
 *
 * Prints, per the bench/ convention:
 *   figure index_insert.cloudpacs <n> instances/s        (bulk, batches of 1000)
 *   figure index_insert_single.cloudpacs <n> instances/s (one durable commit each)
 *   figure index_insert_single_4threads.cloudpacs <n> instances/s
 *   figure index_query.<kind>.cloudpacs <median> ms
 *   figure index_query.<kind>_p95.cloudpacs <p95> ms
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "index/index.h"

#define BATCH 1000
#define SINGLE_PUTS 2000
#define THREADS 4

static const char *const families[] = {
    "SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS",
    "MARTIN", "MULLER", "SCHMIDT", "ROSSI", "DUBOIS", "SILVA", "NOVAK", "KOWALSKI",
    "WANG", "LI", "ZHANG", "LIU", "CHEN", "YANG", "HUANG", "ZHAO", "WU", "ZHOU",
    "TANAKA", "SATO", "SUZUKI", "KIM", "PARK", "NGUYEN",
};
static const char *const families_cjk[] = {
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周",
};
static const char *const givens[] = {
    "JOHN", "MARY", "ANNA", "PETER", "LUCAS", "EMMA", "NOAH", "MIA", "WEI", "FANG",
    "JING", "LEI", "YUKI", "HANA", "MIN", "OLIVIA", "JAMES", "SOFIA", "ADAM", "EVA",
};
static const char *const modalities[] = { "CT", "MR", "CR", "US", "PT", "DX", "MG", "XA" };

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rng(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void set(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src);
}

#define SET(field, value) set((field), sizeof(field), (value))

/* Study s of the synthetic set: two studies per patient, dates over ten years. */
static void fill_study(index_instance_record *r, uint32_t s)
{
    uint32_t patient = s / 2;
    uint32_t f = patient % (sizeof families / sizeof families[0]);
    uint32_t g = (patient / 7) % (sizeof givens / sizeof givens[0]);
    uint32_t day = (s * 2654435761u) % 3650;

    memset(r, 0, sizeof *r);
    snprintf(r->patient.id, sizeof r->patient.id, "PID%07u", patient);
    snprintf(r->patient.issuer, sizeof r->patient.issuer, "CLINIC%02u", patient % 20);
    snprintf(r->patient.name.alphabetic, sizeof r->patient.name.alphabetic, "%s^%s%u",
             families[f], givens[g], patient % 100);
    if (f >= 16 && f < 26)
        snprintf(r->patient.name.ideographic, sizeof r->patient.name.ideographic, "%s^%s",
                 families_cjk[f - 16], "小明");
    snprintf(r->patient.birth_date, sizeof r->patient.birth_date, "19%02u%02u%02u",
             40 + patient % 60, 1 + patient % 12, 1 + patient % 28);
    SET(r->patient.sex, patient % 2 ? "M" : "F");

    snprintf(r->study.uid, sizeof r->study.uid, "1.2.826.0.1.3680043.10.1.%u", s);
    snprintf(r->study.date, sizeof r->study.date, "%04u%02u%02u", 2015 + day / 365,
             1 + (day % 365) / 31 % 12, 1 + day % 28);
    snprintf(r->study.time, sizeof r->study.time, "%02u%02u00", 7 + s % 12, s % 60);
    snprintf(r->study.accession, sizeof r->study.accession, "ACC%08u", s);
    SET(r->study.referring.alphabetic, "HOUSE^GREGORY");
    SET(r->study.description, "CT CHEST WITH CONTRAST");
    snprintf(r->study.id, sizeof r->study.id, "%u", s % 10000);
    r->instance.institution_id = 1 + patient % 20;
    SET(r->instance.source, "MODALITY1");
}

static void fill_instance(index_instance_record *r, uint32_t s, uint32_t series, uint32_t n)
{
    snprintf(r->series.uid, sizeof r->series.uid, "%.40s.%u", r->study.uid, series);
    SET(r->series.modality, modalities[(s + (series > 1 ? series : 0)) % 8]);
    r->series.number = series + 1;
    SET(r->series.description, "AXIAL 1.25MM");
    SET(r->series.body_part, "CHEST");
    SET(r->series.date, r->study.date);
    snprintf(r->instance.sop_uid, sizeof r->instance.sop_uid, "%.52s.%u", r->series.uid, n);
    SET(r->instance.sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
    r->instance.number = n + 1;
    SET(r->instance.transfer_syntax, "1.2.840.10008.1.2.1");
    r->instance.rows = 512;
    r->instance.columns = 512;
    r->instance.frames = 1;
    snprintf(r->instance.blob_key, sizeof r->instance.blob_key, "studies/%u/%u/%u.dcm", s,
             series, n);
    r->instance.size = 526000;
    for (int i = 0; i < INDEX_HASH_SIZE; i++)
        r->instance.hash[i] = (uint8_t)(rng() & 0xFF);
    r->instance.received_us = 1700000000000000 + (int64_t)s * 1000000 + n;
}

static int fill(index_db *idx, uint64_t instances, uint32_t per_study)
{
    index_instance_record *recs = cp_malloc(BATCH * sizeof *recs);
    index_put_result *res = cp_malloc(BATCH * sizeof *res);
    uint32_t per_series = per_study / 4 > 0 ? per_study / 4 : 1;
    uint64_t done = 0;
    size_t n = 0;
    double t0 = now_ms();
    cp_error err;
    char msg[400];

    if (recs == NULL || res == NULL)
        return -1;
    for (uint32_t s = 0; done < instances; s++) {
        index_instance_record base;

        fill_study(&base, s);
        for (uint32_t k = 0; k < per_study && done < instances; k++, done++) {
            recs[n] = base;
            fill_instance(&recs[n], s, k / per_series, k % per_series);
            if (++n < BATCH && done + 1 < instances)
                continue;
            cp_error_clear(&err);
            if (index_put_instances(idx, recs, n, 0, res, &err) != CP_OK) {
                fprintf(stderr, "put: %s\n", cp_error_format(&err, msg, sizeof msg));
                return -1;
            }
            n = 0;
        }
    }
    printf("figure index_insert.cloudpacs %.0f instances/s\n",
           (double)instances / ((now_ms() - t0) / 1e3));
    cp_free(recs);
    cp_free(res);
    return 0;
}

typedef struct single_job {
    index_db *idx;
    uint32_t first_study;
    int count;
    int failures;
} single_job;

/* Durable one-instance commits, as DIMSE associations make them. */
static void *single_main(void *arg)
{
    single_job *job = arg;
    index_instance_record r;
    index_put_result res;

    for (int i = 0; i < job->count; i++) {
        uint32_t s = job->first_study + (uint32_t)i / 100;

        fill_study(&r, s);
        fill_instance(&r, s, 0, (uint32_t)i % 100);
        if (index_put_instance(job->idx, &r, 0, &res, NULL) != CP_OK)
            job->failures++;
    }
    return NULL;
}

static int single_puts(index_db *idx, uint32_t first_study, int threads, const char *name)
{
    pthread_t tids[THREADS];
    single_job jobs[THREADS];
    double t0 = now_ms();
    int total = 0;

    for (int t = 0; t < threads; t++) {
        jobs[t] = (single_job){ idx, first_study + (uint32_t)t * 1000,
                                SINGLE_PUTS / threads, 0 };
        if (pthread_create(&tids[t], NULL, single_main, &jobs[t]) != 0)
            return -1;
    }
    for (int t = 0; t < threads; t++) {
        pthread_join(tids[t], NULL);
        if (jobs[t].failures > 0)
            return -1;
        total += jobs[t].count;
    }
    printf("figure %s.cloudpacs %.0f instances/s\n", name,
           total / ((now_ms() - t0) / 1e3));
    return 0;
}

static cp_status count_row(void *ctx, const index_row *row)
{
    size_t *rows = ctx;

    *rows += row->rec.study.uid[0] != '\0';
    return CP_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

typedef enum { Q_STUDY_UID, Q_PATIENT_ID, Q_NAME_WILDCARD, Q_NAME_FUZZY, Q_DATE_RANGE,
               Q_PAGE, Q_COUNT } query_kind;

static const char *const kind_names[Q_COUNT] = {
    "study_uid", "patient_id", "name_wildcard", "name_fuzzy", "date_range", "page",
};

/* Builds run i of a kind of query over a set of `studies` studies. */
static void make_query(query_kind kind, int i, uint32_t studies, index_query_spec *q,
                       index_term *t, char *value, size_t size)
{
    uint32_t s = rng() % studies;
    uint32_t year = 2015 + (uint32_t)i % 10, month = 1 + (uint32_t)i % 12;

    memset(q, 0, sizeof *q);
    q->level = INDEX_LEVEL_STUDY;
    q->terms = t;
    q->term_count = 1;
    q->limit = 100;
    switch (kind) {
    case Q_STUDY_UID:
        snprintf(value, size, "1.2.826.0.1.3680043.10.1.%u", s);
        t->attribute = "StudyInstanceUID";
        break;
    case Q_PATIENT_ID:
        snprintf(value, size, "PID%07u", s / 2);
        t->attribute = "PatientID";
        break;
    case Q_NAME_WILDCARD:
        snprintf(value, size, "%s^%s%u*", families[(s / 2) % 32], givens[(s / 14) % 20],
                 (s / 2) % 100 / 10);
        t->attribute = "PatientName";
        break;
    case Q_NAME_FUZZY:
        snprintf(value, size, "%.3s %.3s", families[(s / 2) % 32], givens[(s / 14) % 20]);
        t->attribute = "PatientName";
        q->flags = INDEX_QUERY_FUZZY;
        break;
    case Q_DATE_RANGE:
        snprintf(value, size, "%04u%02u01-%04u%02u28", year, month, year, month);
        t->attribute = "StudyDate";
        break;
    case Q_PAGE:
        value[0] = '\0';
        q->term_count = 0;
        q->offset = rng() % studies;
        t->attribute = "PatientID";
        break;
    case Q_COUNT:
        break;
    }
    t->value = value;
}

static int time_queries(index_db *idx, uint32_t studies, int runs)
{
    double *ms = cp_malloc((size_t)runs * sizeof *ms);
    char value[128], msg[400];
    index_query_spec q;
    index_term t;
    cp_error err;

    if (ms == NULL)
        return -1;
    for (int k = 0; k < Q_COUNT; k++) {
        size_t rows = 0;

        for (int i = 0; i < runs; i++) {
            double t0;

            make_query((query_kind)k, i, studies, &q, &t, value, sizeof value);
            cp_error_clear(&err);
            t0 = now_ms();
            if (index_query(idx, &q, count_row, &rows, &err) != CP_OK) {
                fprintf(stderr, "query: %s\n", cp_error_format(&err, msg, sizeof msg));
                return -1;
            }
            ms[i] = now_ms() - t0;
        }
        qsort(ms, (size_t)runs, sizeof *ms, cmp_double);
        printf("figure index_query.%s.cloudpacs %.3f ms\n", kind_names[k], ms[runs / 2]);
        printf("figure index_query.%s_p95.cloudpacs %.3f ms\n", kind_names[k],
               ms[(runs * 95) / 100]);
        fprintf(stderr, "# %s: %.1f rows per query\n", kind_names[k], (double)rows / runs);
    }
    cp_free(ms);
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t instances = 1000000;
    uint32_t per_study = 100;
    int runs = 200;
    const char *keep = NULL;
    bool reuse = false;
    char dir[64] = "", path[128], cmd[160];
    index_db *idx;
    cp_error err;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tiny") == 0) {
            instances = 5000;
            runs = 20;
        } else if (strcmp(argv[i], "--instances") == 0 && i + 1 < argc) {
            instances = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--per-study") == 0 && i + 1 < argc) {
            per_study = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            runs = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--reuse") == 0) {
            reuse = true;
        } else if (strcmp(argv[i], "--keep") == 0 && i + 1 < argc) {
            keep = argv[++i];
        } else {
            fprintf(stderr, "usage: bench_index [--tiny] [--instances N] [--per-study N]"
                            " [--runs N] [--keep PATH] [--reuse]\n");
            return 2;
        }
    }
    if (instances < per_study || per_study == 0 || runs < 1 || (reuse && keep == NULL))
        return 2;

    if (keep != NULL) {
        snprintf(path, sizeof path, "%s", keep);
    } else {
        snprintf(dir, sizeof dir, "/tmp/cloudpacs-bench-index-XXXXXX");
        if (mkdtemp(dir) == NULL)
            return 1;
        snprintf(path, sizeof path, "%s/index.db", dir);
    }

    cp_error_clear(&err);
    if (index_open_sqlite(path, &idx, &err) != CP_OK)
        goto done;
    if (!reuse && fill(idx, instances, per_study) != 0)
        goto close;
    /* Reopening runs PRAGMA optimize, as a long-running server does. */
    index_destroy(idx);
    if (index_open_sqlite(path, &idx, &err) != CP_OK)
        goto done;

    uint32_t studies = (uint32_t)(instances / per_study);
    if (time_queries(idx, studies, runs) != 0)
        goto close;
    if (reuse) {
        rc = 0;
        goto close;
    }
    if (single_puts(idx, studies + 10, 1, "index_insert_single") != 0 ||
        single_puts(idx, studies + 100000, THREADS, "index_insert_single_4threads") != 0)
        goto close;
    rc = 0;

close:
    index_destroy(idx);
done:
    if (rc != 0 && err.status != CP_OK) {
        char msg[400];

        fprintf(stderr, "bench_index: %s\n", cp_error_format(&err, msg, sizeof msg));
    }
    if (dir[0] != '\0') {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            rc = 1;
    }
    return rc;
}

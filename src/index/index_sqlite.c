/*
 * index_sqlite.c - the SQLite backend of the metadata index: the schema and
 * its migrations, upserts with incremental counts, the change log, study
 * completeness, and queries that follow the C-FIND matching rules of
 * PS3.4 C.2.2.2 (single value, list of UIDs, wildcard, range, universal) as
 * QIDO-RS (PS3.18 10.6.1) uses them.
 *
 * Connections: one writer connection, shared by every thread under a mutex
 * (SQLite admits one writer at a time anyway; waiting on a mutex is cheaper
 * than the sleeping busy handler), and a small pool of reader connections
 * that run side by side in WAL mode. Each connection caches its prepared
 * statements: the fixed ones by number, the generated query statements by
 * their SQL text, so that a repeated C-FIND of the same shape costs a bind
 * and a step.
 *
 * Durability: journal_mode=WAL with synchronous=FULL. With NORMAL, a commit
 * is not fsynced until the next checkpoint and a power cut can roll back
 * transactions that already returned; the archive acknowledges an instance
 * once its index row is committed, so the commit must be on disk: FULL
 * fsyncs the WAL at every commit. Concurrent puts share a commit (group
 * commit, see sq_put) and bulk imports batch with index_put_instances, so
 * that the fsync is paid once for many instances.
 *
 * Matching is done on lower-cased copies of the person-name groups (folded
 * here, since SQLite's lower() knows only ASCII) with GLOB, whose only
 * special characters are '*', '?' and '[': DICOM's wildcards map to the
 * first two, a literal '[' is written "[[]", and '%' and '_' in the data
 * mean nothing to it. A literal prefix before the first wildcard also
 * becomes a range on the indexed column, so "SMI*" is an index seek.
 */
#include "index/index.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/buf.h"

/* Milliseconds a connection waits for a lock held by another process. */
#define SQ_BUSY_TIMEOUT_MS 10000

#define SQ_STR_(x) #x
#define SQ_STR(x) SQ_STR_(x)

/* SQLite refuses more host parameters than this in one statement. */
#define SQ_BINDS_MAX 32000

/*
 * The planner needs statistics (sqlite_stat1) to prefer a name index over
 * walking studies in order: without them a wildcard name search at a
 * million instances scans every study (7 ms instead of 0.1 ms). ANALYZE,
 * sampling SQ_ANALYSIS_LIMIT rows per index (a quarter of a second at a
 * million instances), runs after the first SQ_ANALYZE_FIRST instances
 * stored, then after four times as many each time, then every
 * SQ_ANALYZE_STEP_MAX; and at open when a table never had statistics.
 */
#define SQ_ANALYSIS_LIMIT  400
#define SQ_ANALYZE_FIRST   1000
#define SQ_ANALYZE_STEP_MAX 250000

/* --- the schema ---------------------------------------------------------- */

/*
 * Migration n (1-based) is migrations[n - 1]; schema_version holds the
 * highest applied. Never edit an applied migration: append a new one.
 *
 * Text columns hold '' for absent values so that comparisons need no NULL
 * handling; numbers absent from the instance are NULL. *_lc columns are the
 * case-folded PN groups. name_word holds every component of every group of
 * a patient's name (kind 0) or a study's referring physician (kind 1),
 * folded, so that fuzzy matching seeks words by prefix instead of scanning.
 */
static const char *const migrations[] = {
    "CREATE TABLE patient("
    "  pk INTEGER PRIMARY KEY,"
    "  issuer TEXT NOT NULL, patient_id TEXT NOT NULL,"
    "  name_a TEXT NOT NULL, name_i TEXT NOT NULL, name_p TEXT NOT NULL,"
    "  name_a_lc TEXT NOT NULL, name_i_lc TEXT NOT NULL, name_p_lc TEXT NOT NULL,"
    "  birth_date TEXT NOT NULL, sex TEXT NOT NULL,"
    "  UNIQUE(issuer, patient_id));"
    "CREATE INDEX patient_by_id ON patient(patient_id);"
    "CREATE INDEX patient_by_name_a ON patient(name_a_lc);"
    "CREATE INDEX patient_by_name_i ON patient(name_i_lc);"
    "CREATE INDEX patient_by_name_p ON patient(name_p_lc);"
    "CREATE INDEX patient_by_birth ON patient(birth_date);"
    "CREATE TABLE study("
    "  pk INTEGER PRIMARY KEY,"
    "  patient_pk INTEGER NOT NULL,"
    "  uid TEXT NOT NULL UNIQUE,"
    "  date TEXT NOT NULL, time TEXT NOT NULL, accession TEXT NOT NULL,"
    "  ref_a TEXT NOT NULL, ref_i TEXT NOT NULL, ref_p TEXT NOT NULL,"
    "  ref_a_lc TEXT NOT NULL, ref_i_lc TEXT NOT NULL, ref_p_lc TEXT NOT NULL,"
    "  description TEXT NOT NULL, study_id TEXT NOT NULL,"
    "  institution_id INTEGER NOT NULL,"
    "  num_series INTEGER NOT NULL DEFAULT 0,"
    "  num_instances INTEGER NOT NULL DEFAULT 0,"
    "  modalities TEXT NOT NULL DEFAULT '',"
    "  last_arrival INTEGER NOT NULL,"
    "  announced INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX study_by_patient ON study(patient_pk);"
    "CREATE INDEX study_by_date ON study(date);"
    "CREATE INDEX study_by_accession ON study(accession);"
    "CREATE INDEX study_by_ref_a ON study(ref_a_lc);"
    "CREATE INDEX study_quiet ON study(last_arrival) WHERE announced = 0;"
    "CREATE TABLE series("
    "  pk INTEGER PRIMARY KEY,"
    "  study_pk INTEGER NOT NULL,"
    "  uid TEXT NOT NULL UNIQUE,"
    "  modality TEXT NOT NULL, number INTEGER,"
    "  description TEXT NOT NULL, body_part TEXT NOT NULL,"
    "  date TEXT NOT NULL, time TEXT NOT NULL,"
    "  institution_id INTEGER NOT NULL,"
    "  num_instances INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX series_by_study ON series(study_pk, modality);"
    "CREATE INDEX series_by_modality ON series(modality);"
    "CREATE TABLE instance("
    "  pk INTEGER PRIMARY KEY,"
    "  series_pk INTEGER NOT NULL,"
    "  sop_uid TEXT NOT NULL UNIQUE,"
    "  sop_class_uid TEXT NOT NULL, number INTEGER,"
    "  transfer_syntax TEXT NOT NULL,"
    "  frames INTEGER NOT NULL, n_rows INTEGER NOT NULL, n_columns INTEGER NOT NULL,"
    "  blob_key TEXT NOT NULL, size INTEGER NOT NULL, hash BLOB NOT NULL,"
    "  source TEXT NOT NULL, institution_id INTEGER NOT NULL,"
    "  received INTEGER NOT NULL, charset_flags INTEGER NOT NULL);"
    "CREATE INDEX instance_by_series ON instance(series_pk);"
    "CREATE TABLE name_word("
    "  kind INTEGER NOT NULL, word TEXT NOT NULL, owner_pk INTEGER NOT NULL,"
    "  PRIMARY KEY(kind, word, owner_pk)) WITHOUT ROWID;"
    "CREATE INDEX name_word_by_owner ON name_word(kind, owner_pk);"
    "CREATE TABLE change_log("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  kind INTEGER NOT NULL, time INTEGER NOT NULL,"
    "  institution_id INTEGER NOT NULL,"
    "  study_uid TEXT NOT NULL, series_uid TEXT NOT NULL, sop_uid TEXT NOT NULL);",
};

#define MIGRATION_COUNT ((int)(sizeof migrations / sizeof migrations[0]))

/* --- fixed statements ------------------------------------------------------ */

#define PATIENT_COLS "p.patient_id, p.issuer, p.name_a, p.name_i, p.name_p, " \
                     "p.birth_date, p.sex"
#define STUDY_COLS   "st.uid, st.date, st.time, st.accession, st.ref_a, st.ref_i, " \
                     "st.ref_p, st.description, st.study_id, st.institution_id, "   \
                     "st.num_series, st.num_instances, st.modalities, st.last_arrival"
#define SERIES_COLS  "se.uid, se.modality, se.number, se.description, se.body_part, " \
                     "se.date, se.time, se.institution_id, se.num_instances"
#define INSTANCE_COLS "i.sop_uid, i.sop_class_uid, i.number, i.transfer_syntax, "    \
                      "i.frames, i.n_rows, i.n_columns, i.blob_key, i.size, i.hash, " \
                      "i.source, i.institution_id, i.received, i.charset_flags"

/* Column positions of the groups above in a result row. */
enum { COL_PATIENT = 0, COL_STUDY = 7, COL_SERIES = 21, COL_INSTANCE = 30 };

#define FROM_STUDY    " FROM study st JOIN patient p ON p.pk = st.patient_pk"
#define FROM_SERIES   " FROM series se JOIN study st ON st.pk = se.study_pk" \
                      " JOIN patient p ON p.pk = st.patient_pk"
#define FROM_INSTANCE " FROM instance i JOIN series se ON se.pk = i.series_pk" \
                      " JOIN study st ON st.pk = se.study_pk"                  \
                      " JOIN patient p ON p.pk = st.patient_pk"

#define SQ_STMT_LIST(X)                                                                 \
    X(S_BEGIN, "BEGIN IMMEDIATE")                                                       \
    X(S_COMMIT, "COMMIT")                                                               \
    X(S_ROLLBACK, "ROLLBACK")                                                           \
    X(S_SAVEPOINT, "SAVEPOINT put")                                                     \
    X(S_RELEASE, "RELEASE put")                                                         \
    X(S_ROLLBACK_TO, "ROLLBACK TO put")                                                 \
    X(S_VERSION, "SELECT coalesce(max(version), 0) FROM schema_version")               \
    X(S_PATIENT_GET, "SELECT pk FROM patient WHERE issuer = ?1 AND patient_id = ?2")    \
    X(S_PATIENT_INS, "INSERT INTO patient(issuer, patient_id, name_a, name_i, name_p,"  \
      " name_a_lc, name_i_lc, name_p_lc, birth_date, sex)"                              \
      " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")                               \
    X(S_STUDY_GET, "SELECT pk FROM study WHERE uid = ?1")                               \
    X(S_STUDY_INS, "INSERT INTO study(patient_pk, uid, date, time, accession, ref_a,"   \
      " ref_i, ref_p, ref_a_lc, ref_i_lc, ref_p_lc, description, study_id,"             \
      " institution_id, last_arrival) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,"  \
      " ?11, ?12, ?13, ?14, ?15)")                                                      \
    X(S_WORD_INS, "INSERT OR IGNORE INTO name_word(kind, word, owner_pk)"              \
      " VALUES(?1, ?2, ?3)")                                                            \
    X(S_WORD_DEL, "DELETE FROM name_word WHERE kind = ?1 AND owner_pk = ?2")            \
    X(S_SERIES_GET, "SELECT pk, study_pk FROM series WHERE uid = ?1")                   \
    X(S_SERIES_INS, "INSERT INTO series(study_pk, uid, modality, number, description,"  \
      " body_part, date, time, institution_id) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,"  \
      " ?9)")                                                                           \
    X(S_INSTANCE_GET, "SELECT i.pk, i.series_pk, se.study_pk, i.hash, i.blob_key,"     \
      " se.uid, st.uid, i.institution_id FROM instance i"                               \
      " JOIN series se ON se.pk = i.series_pk JOIN study st ON st.pk = se.study_pk"     \
      " WHERE i.sop_uid = ?1")                                                          \
    X(S_INSTANCE_INS, "INSERT INTO instance(series_pk, sop_uid, sop_class_uid, number," \
      " transfer_syntax, frames, n_rows, n_columns, blob_key, size, hash, source,"       \
      " institution_id, received, charset_flags) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7,"    \
      " ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)")                                         \
    X(S_INSTANCE_DEL, "DELETE FROM instance WHERE pk = ?1")                             \
    X(S_SERIES_ADD, "UPDATE series SET num_instances = num_instances + ?1 WHERE pk = ?2") \
    X(S_STUDY_ADD, "UPDATE study SET num_instances = num_instances + ?1,"               \
      " num_series = num_series + ?2,"                                                  \
      " last_arrival = CASE WHEN ?3 IS NULL THEN last_arrival"                          \
      "   ELSE max(last_arrival, ?3) END,"                                              \
      " announced = CASE WHEN ?3 IS NULL THEN announced ELSE 0 END WHERE pk = ?4")      \
    X(S_MODALITIES_GET, "SELECT DISTINCT modality FROM series"                         \
      " WHERE study_pk = ?1 AND modality <> '' ORDER BY modality")                      \
    X(S_MODALITIES_SET, "UPDATE study SET modalities = ?1 WHERE pk = ?2")               \
    X(S_SERIES_LEFT, "SELECT num_instances, study_pk FROM series WHERE pk = ?1")       \
    X(S_SERIES_DEL, "DELETE FROM series WHERE pk = ?1")                                 \
    X(S_STUDY_LEFT, "SELECT num_series, patient_pk FROM study WHERE pk = ?1")          \
    X(S_STUDY_DEL, "DELETE FROM study WHERE pk = ?1")                                   \
    X(S_PATIENT_USED, "SELECT 1 FROM study WHERE patient_pk = ?1 LIMIT 1")              \
    X(S_PATIENT_DEL, "DELETE FROM patient WHERE pk = ?1")                               \
    X(S_CHANGE_INS, "INSERT INTO change_log(kind, time, institution_id, study_uid,"     \
      " series_uid, sop_uid) VALUES(?1, ?2, ?3, ?4, ?5, ?6)")                           \
    X(S_SOPS_OF_SERIES, "SELECT i.sop_uid FROM instance i JOIN series se"               \
      " ON se.pk = i.series_pk WHERE se.uid = ?1")                                      \
    X(S_SOPS_OF_STUDY, "SELECT i.sop_uid FROM instance i JOIN series se"                \
      " ON se.pk = i.series_pk JOIN study st ON st.pk = se.study_pk WHERE st.uid = ?1") \
    X(S_CHANGES, "SELECT seq, kind, time, institution_id, study_uid, series_uid,"       \
      " sop_uid FROM change_log WHERE seq > ?1 ORDER BY seq LIMIT ?2")                  \
    X(S_LAST_CHANGE, "SELECT coalesce(max(seq), 0) FROM change_log")                    \
    X(S_QUIET, "SELECT " PATIENT_COLS ", " STUDY_COLS FROM_STUDY                        \
      " WHERE st.announced = 0 AND st.last_arrival < ?1"                                \
      " ORDER BY st.last_arrival, st.pk LIMIT ?2")                                      \
    X(S_MARK, "UPDATE study SET announced = 1 WHERE uid = ?1 AND last_arrival <= ?2"    \
      " AND announced = 0")                                                             \
    X(S_ARRIVAL, "SELECT last_arrival FROM study WHERE uid = ?1")                       \
    X(S_STUDY_INSTITUTION, "SELECT institution_id FROM study WHERE uid = ?1")

typedef enum {
#define SQ_STMT_ENUM(name, sql) name,
    SQ_STMT_LIST(SQ_STMT_ENUM)
#undef SQ_STMT_ENUM
    S_COUNT
} sq_stmt_id;

static const char *const stmt_sql[S_COUNT] = {
#define SQ_STMT_SQL(name, sql) [name] = sql,
    SQ_STMT_LIST(SQ_STMT_SQL)
#undef SQ_STMT_SQL
};

/* --- connections ------------------------------------------------------------ */

typedef struct sq_cached {
    char *sql;
    sqlite3_stmt *stmt;
} sq_cached;

typedef struct sq_conn {
    sqlite3 *db;
    sqlite3_stmt *stmts[S_COUNT];
    sq_cached cache[INDEX_SQLITE_QUERY_CACHE];
    unsigned cache_next;        /* the slot evicted next when the cache is full */
    bool busy;
} sq_conn;

/* One caller's put, waiting in the group-commit queue. */
typedef struct sq_request {
    const index_instance_record *recs;
    size_t count;
    unsigned flags;
    index_put_result *results;
    cp_error *err;
    cp_status status;
    bool done;
    struct sq_request *next;
} sq_request;

typedef struct sq_index {
    char *path;
    pthread_mutex_t write_lock;     /* held around every write transaction */
    sq_conn writer;
    pthread_mutex_t queue_lock;     /* guards the fields below */
    pthread_cond_t queue_done;      /* a leader finished a group */
    sq_request *queue;
    sq_request **queue_tail;
    bool leading;                   /* a thread is committing a group */
    uint64_t stored;                /* instances stored since the last ANALYZE ... */
    uint64_t analyze_at;            /* ... and how many trigger the next */
    pthread_mutex_t pool_lock;
    pthread_cond_t pool_free;
    sq_conn readers[INDEX_SQLITE_READERS_MAX];
    size_t reader_count;
} sq_index;

static cp_status sq_fail(sq_conn *c, int rc, const char *what, cp_error *err)
{
    cp_status st = CP_ERR_IO;

    if (rc == SQLITE_NOMEM)
        st = CP_ERR_NOMEM;
    else if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        st = CP_ERR_AGAIN;
    else if (rc == SQLITE_CONSTRAINT)
        st = CP_ERR_EXISTS;

    /* SQLite's messages name tables and columns, never the values. */
    return cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, "sqlite %s failed: %s",
                        what, c->db != NULL ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
}

/* A fixed statement of the connection, prepared on first use. */
static cp_status sq_stmt(sq_conn *c, sq_stmt_id id, sqlite3_stmt **out, cp_error *err)
{
    int rc;

    *out = NULL;
    if (c->stmts[id] == NULL) {
        rc = sqlite3_prepare_v3(c->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                &c->stmts[id], NULL);
        if (rc != SQLITE_OK)
            return sq_fail(c, rc, "prepare", err);
    }
    *out = c->stmts[id];
    return CP_OK;
}

static void sq_done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Runs a statement that returns no rows, and resets it. */
static cp_status sq_run(sq_conn *c, sqlite3_stmt *s, const char *what, cp_error *err)
{
    int rc = sqlite3_step(s);

    sq_done(s);
    if (rc != SQLITE_DONE)
        return sq_fail(c, rc, what, err);
    return CP_OK;
}

static cp_status sq_run_id(sq_conn *c, sq_stmt_id id, const char *what, cp_error *err)
{
    sqlite3_stmt *s;
    cp_status rc = sq_stmt(c, id, &s, err);

    if (rc != CP_OK)
        return rc;
    return sq_run(c, s, what, err);
}

static cp_status sq_exec(sq_conn *c, const char *sql, cp_error *err)
{
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);

    if (rc != SQLITE_OK)
        return sq_fail(c, rc, "exec", err);
    return CP_OK;
}

static void sq_conn_close(sq_conn *c)
{
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(c->stmts[i]);
    for (int i = 0; i < INDEX_SQLITE_QUERY_CACHE; i++) {
        sqlite3_finalize(c->cache[i].stmt);
        cp_free(c->cache[i].sql);
    }
    sqlite3_close(c->db);
    memset(c, 0, sizeof *c);
}

static int wal_answer(void *ctx, int ncols, char **values, char **names)
{
    bool *is_wal = ctx;

    (void)names;
    *is_wal = ncols > 0 && values[0] != NULL && strcmp(values[0], "wal") == 0;
    return 0;
}

/*
 * WAL lets readers run beside the writer. SQLite answers the pragma with the
 * mode in force, which stays the old one where WAL cannot work (a network
 * filesystem without shared memory): refuse to run there.
 */
static cp_status sq_enable_wal(sq_conn *c, cp_error *err)
{
    bool is_wal = false;
    int rc = sqlite3_exec(c->db, "PRAGMA journal_mode=WAL", wal_answer, &is_wal, NULL);

    if (rc != SQLITE_OK)
        return sq_fail(c, rc, "journal_mode", err);
    if (!is_wal)
        return cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "the index file system does not support SQLite WAL mode");
    return CP_OK;
}

static cp_status sq_conn_open(sq_conn *c, const char *path, bool reader, cp_error *err)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    cp_status st;
    int rc;

    memset(c, 0, sizeof *c);
    if (!reader)
        flags |= SQLITE_OPEN_CREATE;
    rc = sqlite3_open_v2(path, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        st = sq_fail(c, rc, "open", err);
        goto fail;
    }
    sqlite3_extended_result_codes(c->db, 0);
    sqlite3_busy_timeout(c->db, SQ_BUSY_TIMEOUT_MS);

    /*
     * See the top of the file for why FULL. Every connection maps the first
     * 256 MiB of the file, so readers need only a small page cache (8 MiB)
     * of their own; the writer keeps 32 MiB of the pages it changes.
     */
    if (reader)
        st = sq_exec(c, "PRAGMA query_only=1; PRAGMA temp_store=MEMORY;"
                        " PRAGMA cache_size=-8192; PRAGMA mmap_size=268435456;", err);
    else
        st = sq_exec(c, "PRAGMA synchronous=FULL; PRAGMA temp_store=MEMORY;"
                        " PRAGMA cache_size=-32768; PRAGMA mmap_size=268435456;", err);
    if (st == CP_OK && !reader)
        st = sq_enable_wal(c, err);
    if (st != CP_OK)
        goto fail;
    return CP_OK;

fail:
    sq_conn_close(c);
    return st;
}

/* A reader connection for this thread until sq_release; waits when all are busy. */
static cp_status sq_acquire(sq_index *sq, sq_conn **out, cp_error *err)
{
    cp_status st = CP_OK;

    pthread_mutex_lock(&sq->pool_lock);
    for (;;) {
        for (size_t i = 0; i < sq->reader_count; i++) {
            if (!sq->readers[i].busy) {
                sq->readers[i].busy = true;
                *out = &sq->readers[i];
                goto done;
            }
        }
        if (sq->reader_count < INDEX_SQLITE_READERS_MAX) {
            sq_conn *c = &sq->readers[sq->reader_count];

            st = sq_conn_open(c, sq->path, true, err);
            if (st != CP_OK)
                goto done;
            c->busy = true;
            sq->reader_count++;
            *out = c;
            goto done;
        }
        pthread_cond_wait(&sq->pool_free, &sq->pool_lock);
    }

done:
    pthread_mutex_unlock(&sq->pool_lock);
    return st;
}

static void sq_release(sq_index *sq, sq_conn *c)
{
    pthread_mutex_lock(&sq->pool_lock);
    c->busy = false;
    pthread_cond_signal(&sq->pool_free);
    pthread_mutex_unlock(&sq->pool_lock);
}

/* A cached statement for generated SQL, prepared on a miss. */
static cp_status sq_cached_stmt(sq_conn *c, const char *sql, sqlite3_stmt **out,
                                cp_error *err)
{
    sq_cached *slot;
    int rc;

    *out = NULL;
    for (int i = 0; i < INDEX_SQLITE_QUERY_CACHE; i++) {
        if (c->cache[i].sql != NULL && strcmp(c->cache[i].sql, sql) == 0) {
            *out = c->cache[i].stmt;
            return CP_OK;
        }
    }

    slot = &c->cache[c->cache_next];
    c->cache_next = (c->cache_next + 1) % INDEX_SQLITE_QUERY_CACHE;
    sqlite3_finalize(slot->stmt);
    cp_free(slot->sql);
    slot->stmt = NULL;
    slot->sql = cp_strdup(sql);
    if (slot->sql == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, NULL);

    rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &slot->stmt, NULL);
    if (rc != SQLITE_OK) {
        cp_free(slot->sql);
        slot->sql = NULL;
        return sq_fail(c, rc, "prepare", err);
    }
    *out = slot->stmt;
    return CP_OK;
}

/* --- migrations ------------------------------------------------------------- */

static cp_status sq_read_version(sq_conn *c, int *version, cp_error *err)
{
    sqlite3_stmt *s;
    cp_status st = sq_stmt(c, S_VERSION, &s, err);
    int rc;

    if (st != CP_OK)
        return st;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *version = sqlite3_column_int(s, 0);
    sq_done(s);
    if (rc != SQLITE_ROW)
        return sq_fail(c, rc, "read schema version", err);
    return CP_OK;
}

/*
 * Applies each missing migration in a transaction of its own. The version
 * is read again inside the transaction, so that two processes opening the
 * same file at once apply each migration once.
 */
static cp_status sq_migrate(sq_conn *c, cp_error *err)
{
    char insert[96];
    cp_status st;
    int version = 0;

    st = sq_exec(c, "CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)",
                 err);
    if (st != CP_OK)
        return st;

    for (int next = 1; next <= MIGRATION_COUNT; next++) {
        if ((st = sq_run_id(c, S_BEGIN, "begin", err)) != CP_OK)
            return st;
        st = sq_read_version(c, &version, err);
        if (st == CP_OK && version > MIGRATION_COUNT)
            st = cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                              "index schema %d is newer than this build (%d)", version,
                              MIGRATION_COUNT);
        if (st == CP_OK && version < next) {
            snprintf(insert, sizeof insert, "INSERT INTO schema_version VALUES(%d)", next);
            st = sq_exec(c, migrations[next - 1], err);
            if (st == CP_OK)
                st = sq_exec(c, insert, err);
        }
        if (st == CP_OK)
            st = sq_run_id(c, S_COMMIT, "commit", err);
        if (st != CP_OK) {
            sq_run_id(c, S_ROLLBACK, "rollback", NULL);
            return st;
        }
    }
    return CP_OK;
}

/* --- text folding ------------------------------------------------------------ */

/*
 * The lower-case counterpart of a code point, for the scripts person names
 * are written in that have case: Latin (Basic, Latin-1, Extended-A), Greek
 * and Cyrillic. Every mapping keeps the UTF-8 length, so folding never grows
 * a string. Scripts without case (CJK, kana, hangul) pass through.
 */
static uint32_t fold_cp(uint32_t cp)
{
    if (cp >= 'A' && cp <= 'Z')
        return cp + 32;
    if (cp < 0xC0)
        return cp;
    if (cp <= 0xDE)
        return cp == 0xD7 ? cp : cp + 0x20;
    if ((cp >= 0x100 && cp <= 0x12F) || (cp >= 0x132 && cp <= 0x137) ||
        (cp >= 0x14A && cp <= 0x177))
        return cp | 1;
    if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E))
        return (cp & 1) ? cp + 1 : cp;
    if (cp == 0x178)
        return 0xFF;
    if (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2)
        return cp + 0x20;
    if (cp >= 0x400 && cp <= 0x40F)
        return cp + 0x50;
    if (cp >= 0x410 && cp <= 0x42F)
        return cp + 0x20;
    return cp;
}

/* Folds UTF-8 s into out (at least strlen(s) + 1 bytes). */
static void fold_utf8(const char *s, char *out)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned char *o = (unsigned char *)out;

    while (*p != '\0') {
        uint32_t cp;

        if (*p < 0x80) {
            *o++ = (unsigned char)fold_cp(*p++);
            continue;
        }
        /* Only two-byte sequences (U+0080..U+07FF) have case mappings here. */
        if ((p[0] & 0xE0) == 0xC0 && (p[1] & 0xC0) == 0x80) {
            cp = (uint32_t)(p[0] & 0x1F) << 6 | (p[1] & 0x3F);
            cp = fold_cp(cp);
            *o++ = (unsigned char)(0xC0 | cp >> 6);
            *o++ = (unsigned char)(0x80 | (cp & 0x3F));
            p += 2;
            continue;
        }
        *o++ = *p++;
    }
    *o = '\0';
}

/* The kinds of owner in name_word. */
enum { WORD_PATIENT = 0, WORD_REFERRING = 1 };

/*
 * Calls fn for every component of every group of a name, folded: the words
 * that fuzzy matching finds by prefix. A component may hold several words
 * ("VAN DER BERG"), so spaces split too.
 */
static cp_status name_words(const index_person_name *pn, char *folded,
                            cp_status (*fn)(void *ctx, const char *word, size_t len),
                            void *ctx)
{
    const char *groups[3] = { pn->alphabetic, pn->ideographic, pn->phonetic };

    for (int g = 0; g < 3; g++) {
        const char *p = folded;

        fold_utf8(groups[g], folded);
        while (*p != '\0') {
            size_t len = strcspn(p, "^ ");
            cp_status st = len > 0 ? fn(ctx, p, len) : CP_OK;

            if (st != CP_OK)
                return st;
            p += len;
            if (*p != '\0')
                p++;
        }
    }
    return CP_OK;
}

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* --- storing ------------------------------------------------------------------ */

static void bind_text(sqlite3_stmt *s, int i, const char *text)
{
    sqlite3_bind_text(s, i, text, -1, SQLITE_STATIC);
}

static void bind_number(sqlite3_stmt *s, int i, int64_t v)
{
    if (v == INDEX_NUMBER_NONE)
        sqlite3_bind_null(s, i);
    else
        sqlite3_bind_int64(s, i, v);
}

/* Looks up a pk by one or two text keys; *pk = 0 when there is none. */
static cp_status sq_find_pk(sq_conn *c, sq_stmt_id id, const char *k1, const char *k2,
                            int64_t *pk, int64_t *parent, cp_error *err)
{
    sqlite3_stmt *s;
    cp_status st = sq_stmt(c, id, &s, err);
    int rc;

    if (st != CP_OK)
        return st;
    bind_text(s, 1, k1);
    if (k2 != NULL)
        bind_text(s, 2, k2);

    *pk = 0;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *pk = sqlite3_column_int64(s, 0);
        if (parent != NULL)
            *parent = sqlite3_column_int64(s, 1);
    }
    sq_done(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_fail(c, rc, "lookup", err);
    return CP_OK;
}

static cp_status sq_insert(sq_conn *c, sqlite3_stmt *s, int64_t *pk, cp_error *err)
{
    cp_status st = sq_run(c, s, "insert", err);

    if (st == CP_OK)
        *pk = sqlite3_last_insert_rowid(c->db);
    return st;
}

static void bind_name(sqlite3_stmt *s, int first, const index_person_name *pn,
                      char folded[3][INDEX_PN_GROUP_MAX + 1])
{
    fold_utf8(pn->alphabetic, folded[0]);
    fold_utf8(pn->ideographic, folded[1]);
    fold_utf8(pn->phonetic, folded[2]);

    bind_text(s, first, pn->alphabetic);
    bind_text(s, first + 1, pn->ideographic);
    bind_text(s, first + 2, pn->phonetic);
    for (int g = 0; g < 3; g++)
        bind_text(s, first + 3 + g, folded[g]);
}

/* Scratch space for folded names, kept off the stack of every call. */
typedef struct sq_fold {
    char groups[3][INDEX_PN_GROUP_MAX + 1];
    char word_group[INDEX_PN_GROUP_MAX + 1];
} sq_fold;

typedef struct word_ctx {
    sq_conn *c;
    sqlite3_stmt *s;
    cp_error *err;
} word_ctx;

static cp_status add_word(void *ctx, const char *word, size_t len)
{
    word_ctx *w = ctx;
    int rc;

    sqlite3_bind_text(w->s, 2, word, (int)len, SQLITE_STATIC);
    rc = sqlite3_step(w->s);
    sqlite3_reset(w->s);
    if (rc != SQLITE_DONE)
        return sq_fail(w->c, rc, "insert word", w->err);
    return CP_OK;
}

/* Files the words of a new patient's or study's name for fuzzy matching. */
static cp_status sq_add_words(sq_conn *c, int kind, int64_t owner, const index_person_name *pn,
                              sq_fold *f, cp_error *err)
{
    word_ctx w = { c, NULL, err };
    cp_status st = sq_stmt(c, S_WORD_INS, &w.s, err);

    if (st != CP_OK)
        return st;
    sqlite3_bind_int(w.s, 1, kind);
    sqlite3_bind_int64(w.s, 3, owner);
    st = name_words(pn, f->word_group, add_word, &w);
    sq_done(w.s);
    return st;
}

static cp_status sq_delete_words(sq_conn *c, int kind, int64_t owner, cp_error *err)
{
    sqlite3_stmt *s;
    cp_status st = sq_stmt(c, S_WORD_DEL, &s, err);

    if (st != CP_OK)
        return st;
    sqlite3_bind_int(s, 1, kind);
    sqlite3_bind_int64(s, 2, owner);
    return sq_run(c, s, "delete words", err);
}

static cp_status sq_patient_pk(sq_conn *c, const index_instance_record *rec, sq_fold *f,
                               int64_t *pk, cp_error *err)
{
    const index_patient *p = &rec->patient;
    const char *issuer = p->issuer[0] != '\0' ? p->issuer : rec->instance.source;
    sqlite3_stmt *s;
    cp_status st = sq_find_pk(c, S_PATIENT_GET, issuer, p->id, pk, NULL, err);

    if (st != CP_OK || *pk != 0)
        return st;
    if ((st = sq_stmt(c, S_PATIENT_INS, &s, err)) != CP_OK)
        return st;
    bind_text(s, 1, issuer);
    bind_text(s, 2, p->id);
    bind_name(s, 3, &p->name, f->groups);
    bind_text(s, 9, p->birth_date);
    bind_text(s, 10, p->sex);
    if ((st = sq_insert(c, s, pk, err)) != CP_OK)
        return st;
    return sq_add_words(c, WORD_PATIENT, *pk, &p->name, f, err);
}

static cp_status sq_study_pk(sq_conn *c, const index_instance_record *rec, int64_t patient_pk,
                             int64_t received, sq_fold *f, int64_t *pk, cp_error *err)
{
    const index_study *d = &rec->study;
    sqlite3_stmt *s;
    cp_status st = sq_find_pk(c, S_STUDY_GET, d->uid, NULL, pk, NULL, err);

    if (st != CP_OK || *pk != 0)
        return st;
    if ((st = sq_stmt(c, S_STUDY_INS, &s, err)) != CP_OK)
        return st;
    sqlite3_bind_int64(s, 1, patient_pk);
    bind_text(s, 2, d->uid);
    bind_text(s, 3, d->date);
    bind_text(s, 4, d->time);
    bind_text(s, 5, d->accession);
    bind_name(s, 6, &d->referring, f->groups);
    bind_text(s, 12, d->description);
    bind_text(s, 13, d->id);
    sqlite3_bind_int64(s, 14, rec->instance.institution_id);
    sqlite3_bind_int64(s, 15, received);
    if ((st = sq_insert(c, s, pk, err)) != CP_OK)
        return st;
    return sq_add_words(c, WORD_REFERRING, *pk, &d->referring, f, err);
}

static cp_status sq_series_pk(sq_conn *c, const index_instance_record *rec, int64_t study_pk,
                              int64_t *pk, int64_t *owner, bool *created, cp_error *err)
{
    const index_series *d = &rec->series;
    sqlite3_stmt *s;
    cp_status st = sq_find_pk(c, S_SERIES_GET, d->uid, NULL, pk, owner, err);

    *created = false;
    if (st != CP_OK || *pk != 0)
        return st;
    if ((st = sq_stmt(c, S_SERIES_INS, &s, err)) != CP_OK)
        return st;
    sqlite3_bind_int64(s, 1, study_pk);
    bind_text(s, 2, d->uid);
    bind_text(s, 3, d->modality);
    bind_number(s, 4, d->number);
    bind_text(s, 5, d->description);
    bind_text(s, 6, d->body_part);
    bind_text(s, 7, d->date);
    bind_text(s, 8, d->time);
    sqlite3_bind_int64(s, 9, rec->instance.institution_id);
    *owner = study_pk;
    *created = true;
    return sq_insert(c, s, pk, err);
}

/* Rewrites ModalitiesInStudy from the study's series. */
static cp_status sq_update_modalities(sq_conn *c, int64_t study_pk, cp_error *err)
{
    char list[INDEX_MODALITIES_MAX + 1];
    size_t n = 0;
    sqlite3_stmt *s;
    cp_status st = sq_stmt(c, S_MODALITIES_GET, &s, err);
    int rc;

    if (st != CP_OK)
        return st;
    sqlite3_bind_int64(s, 1, study_pk);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *m = (const char *)sqlite3_column_text(s, 0);
        size_t len = (size_t)sqlite3_column_bytes(s, 0);

        /* Cut at a whole value; matching uses the series table, not this. */
        if (n + (n > 0) + len > INDEX_MODALITIES_MAX)
            continue;
        if (n > 0)
            list[n++] = '\\';
        memcpy(list + n, m, len);
        n += len;
    }
    list[n] = '\0';
    sq_done(s);
    if (rc != SQLITE_DONE)
        return sq_fail(c, rc, "read modalities", err);

    if ((st = sq_stmt(c, S_MODALITIES_SET, &s, err)) != CP_OK)
        return st;
    bind_text(s, 1, list);
    sqlite3_bind_int64(s, 2, study_pk);
    return sq_run(c, s, "update modalities", err);
}

/* Adds delta instances (and series) to the counts; received 0 leaves the arrival. */
static cp_status sq_count(sq_conn *c, int64_t series_pk, int64_t study_pk, int delta,
                          int series_delta, int64_t received, cp_error *err)
{
    sqlite3_stmt *s;
    cp_status st = sq_stmt(c, S_SERIES_ADD, &s, err);

    if (st != CP_OK)
        return st;
    sqlite3_bind_int(s, 1, delta);
    sqlite3_bind_int64(s, 2, series_pk);
    if ((st = sq_run(c, s, "count series", err)) != CP_OK)
        return st;

    if ((st = sq_stmt(c, S_STUDY_ADD, &s, err)) != CP_OK)
        return st;
    sqlite3_bind_int(s, 1, delta);
    sqlite3_bind_int(s, 2, series_delta);
    if (received != 0)
        sqlite3_bind_int64(s, 3, received);
    sqlite3_bind_int64(s, 4, study_pk);
    return sq_run(c, s, "count study", err);
}

static cp_status sq_insert_instance(sq_conn *c, const index_instance *in, int64_t series_pk,
                                    int64_t received, cp_error *err)
{
    sqlite3_stmt *s;
    cp_status st = sq_stmt(c, S_INSTANCE_INS, &s, err);
    int64_t pk;

    if (st != CP_OK)
        return st;
    sqlite3_bind_int64(s, 1, series_pk);
    bind_text(s, 2, in->sop_uid);
    bind_text(s, 3, in->sop_class_uid);
    bind_number(s, 4, in->number);
    bind_text(s, 5, in->transfer_syntax);
    sqlite3_bind_int64(s, 6, in->frames);
    sqlite3_bind_int64(s, 7, in->rows);
    sqlite3_bind_int64(s, 8, in->columns);
    bind_text(s, 9, in->blob_key);
    sqlite3_bind_int64(s, 10, (sqlite3_int64)in->size);
    sqlite3_bind_blob(s, 11, in->hash, INDEX_HASH_SIZE, SQLITE_STATIC);
    bind_text(s, 12, in->source);
    sqlite3_bind_int64(s, 13, in->institution_id);
    sqlite3_bind_int64(s, 14, received);
    sqlite3_bind_int64(s, 15, in->charset_flags);
    return sq_insert(c, s, &pk, err);
}

/* Adds a new instance with whatever patient, study and series it needs. */
static cp_status sq_add(sq_conn *c, const index_instance_record *rec, int64_t received,
                        sq_fold *f, cp_error *err)
{
    int64_t patient_pk, study_pk, series_pk, owner;
    bool new_series;
    cp_status st;

    if ((st = sq_patient_pk(c, rec, f, &patient_pk, err)) != CP_OK)
        return st;
    if ((st = sq_study_pk(c, rec, patient_pk, received, f, &study_pk, err)) != CP_OK)
        return st;
    st = sq_series_pk(c, rec, study_pk, &series_pk, &owner, &new_series, err);
    if (st != CP_OK)
        return st;

    /* A series UID seen before under another study keeps its first study. */
    if ((st = sq_insert_instance(c, &rec->instance, series_pk, received, err)) != CP_OK)
        return st;
    if ((st = sq_count(c, series_pk, owner, 1, new_series, received, err)) != CP_OK)
        return st;
    if (new_series && rec->series.modality[0] != '\0')
        st = sq_update_modalities(c, owner, err);
    return st;
}

static cp_status sq_log(sq_conn *c, index_change_kind kind, int64_t time, int64_t institution,
                        const char *study_uid, const char *series_uid, const char *sop_uid,
                        int64_t *seq, cp_error *err)
{
    sqlite3_stmt *s;
    cp_status st = sq_stmt(c, S_CHANGE_INS, &s, err);

    if (st != CP_OK)
        return st;
    sqlite3_bind_int(s, 1, (int)kind);
    sqlite3_bind_int64(s, 2, time);
    sqlite3_bind_int64(s, 3, institution);
    bind_text(s, 4, study_uid);
    bind_text(s, 5, series_uid);
    bind_text(s, 6, sop_uid);
    return sq_insert(c, s, seq, err);
}

/* What the index holds about one instance. */
typedef struct sq_existing {
    int64_t pk, series_pk, study_pk, institution;
    uint8_t hash[INDEX_HASH_SIZE];
    char blob_key[INDEX_BLOB_KEY_MAX + 1];
    char series_uid[INDEX_UID_MAX + 1];
    char study_uid[INDEX_UID_MAX + 1];
} sq_existing;

static void col_copy(sqlite3_stmt *s, int col, char *dst, size_t size)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    size_t n = (size_t)sqlite3_column_bytes(s, col);

    if (t == NULL)
        n = 0;
    if (n >= size)
        n = size - 1;
    if (n > 0)
        memcpy(dst, t, n);
    dst[n] = '\0';
}

/* Finds an instance by SOP Instance UID; ex->pk = 0 when it is not there. */
static cp_status sq_find_instance(sq_conn *c, const char *sop_uid, sq_existing *ex,
                                  cp_error *err)
{
    sqlite3_stmt *s;
    cp_status st = sq_stmt(c, S_INSTANCE_GET, &s, err);
    int rc;

    if (st != CP_OK)
        return st;
    bind_text(s, 1, sop_uid);
    ex->pk = 0;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const void *hash = sqlite3_column_blob(s, 3);

        ex->pk = sqlite3_column_int64(s, 0);
        ex->series_pk = sqlite3_column_int64(s, 1);
        ex->study_pk = sqlite3_column_int64(s, 2);
        memset(ex->hash, 0, sizeof ex->hash);
        if (hash != NULL && sqlite3_column_bytes(s, 3) == INDEX_HASH_SIZE)
            memcpy(ex->hash, hash, INDEX_HASH_SIZE);
        col_copy(s, 4, ex->blob_key, sizeof ex->blob_key);
        col_copy(s, 5, ex->series_uid, sizeof ex->series_uid);
        col_copy(s, 6, ex->study_uid, sizeof ex->study_uid);
        ex->institution = sqlite3_column_int64(s, 7);
    }
    sq_done(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_fail(c, rc, "find instance", err);
    return CP_OK;
}

/* Runs a one-pk statement (a delete). */
static cp_status sq_run_pk(sq_conn *c, sq_stmt_id id, int64_t pk, cp_error *err)
{
    sqlite3_stmt *s;
    cp_status st = sq_stmt(c, id, &s, err);

    if (st != CP_OK)
        return st;
    sqlite3_bind_int64(s, 1, pk);
    return sq_run(c, s, "delete", err);
}

/* Reads two integers of the one row a pk statement returns; *found = false without one. */
static cp_status sq_two_ints(sq_conn *c, sq_stmt_id id, int64_t pk, int64_t *a, int64_t *b,
                             bool *found, cp_error *err)
{
    sqlite3_stmt *s;
    cp_status st = sq_stmt(c, id, &s, err);
    int rc;

    if (st != CP_OK)
        return st;
    sqlite3_bind_int64(s, 1, pk);
    rc = sqlite3_step(s);
    *found = rc == SQLITE_ROW;
    if (*found) {
        *a = sqlite3_column_int64(s, 0);
        if (b != NULL)
            *b = sqlite3_column_int64(s, 1);
    }
    sq_done(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_fail(c, rc, "lookup", err);
    return CP_OK;
}

/* Removes a series left without instances, then its study and patient if emptied. */
static cp_status sq_prune(sq_conn *c, int64_t series_pk, cp_error *err)
{
    int64_t left, study_pk, patient_pk, used;
    bool found;
    cp_status st;

    st = sq_two_ints(c, S_SERIES_LEFT, series_pk, &left, &study_pk, &found, err);
    if (st != CP_OK || !found || left > 0)
        return st;
    if ((st = sq_run_pk(c, S_SERIES_DEL, series_pk, err)) != CP_OK)
        return st;
    if ((st = sq_count(c, 0, study_pk, 0, -1, 0, err)) != CP_OK)
        return st;
    if ((st = sq_update_modalities(c, study_pk, err)) != CP_OK)
        return st;

    st = sq_two_ints(c, S_STUDY_LEFT, study_pk, &left, &patient_pk, &found, err);
    if (st != CP_OK || !found || left > 0)
        return st;
    if ((st = sq_run_pk(c, S_STUDY_DEL, study_pk, err)) != CP_OK)
        return st;
    if ((st = sq_delete_words(c, WORD_REFERRING, study_pk, err)) != CP_OK)
        return st;

    st = sq_two_ints(c, S_PATIENT_USED, patient_pk, &used, NULL, &found, err);
    if (st != CP_OK || found)
        return st;
    if ((st = sq_run_pk(c, S_PATIENT_DEL, patient_pk, err)) != CP_OK)
        return st;
    return sq_delete_words(c, WORD_PATIENT, patient_pk, err);
}

/* Removes an instance row and its share of the counts; parents stay. */
static cp_status sq_remove_row(sq_conn *c, const sq_existing *ex, cp_error *err)
{
    cp_status st = sq_run_pk(c, S_INSTANCE_DEL, ex->pk, err);

    if (st != CP_OK)
        return st;
    return sq_count(c, ex->series_pk, ex->study_pk, -1, 0, 0, err);
}

static cp_status sq_put_one(sq_conn *c, const index_instance_record *rec, unsigned flags,
                            sq_fold *f, index_put_result *res, cp_error *err)
{
    const index_instance *in = &rec->instance;
    int64_t received = in->received_us != 0 ? in->received_us : now_us();
    index_change_kind kind = INDEX_CHANGE_STORED;
    sq_existing ex;
    cp_status st;

    res->change_seq = 0;
    res->old_blob_key[0] = '\0';
    if ((st = sq_find_instance(c, in->sop_uid, &ex, err)) != CP_OK)
        return st;

    if (ex.pk != 0) {
        memcpy(res->old_blob_key, ex.blob_key, sizeof ex.blob_key);
        if (memcmp(ex.hash, in->hash, INDEX_HASH_SIZE) == 0) {
            res->outcome = INDEX_SAME;
            return CP_OK;
        }
        if (!(flags & INDEX_PUT_REPLACE)) {
            res->outcome = INDEX_DIFFERENT;
            return CP_OK;
        }
        if ((st = sq_remove_row(c, &ex, err)) != CP_OK)
            return st;
        kind = INDEX_CHANGE_REPLACED;
    }

    if ((st = sq_add(c, rec, received, f, err)) != CP_OK)
        return st;
    /* After the add, so that a replacement within its series keeps it. */
    if (ex.pk != 0 && (st = sq_prune(c, ex.series_pk, err)) != CP_OK)
        return st;

    res->outcome = kind == INDEX_CHANGE_STORED ? INDEX_STORED_NEW : INDEX_REPLACED;
    return sq_log(c, kind, received, in->institution_id, rec->study.uid, rec->series.uid,
                  in->sop_uid, &res->change_seq, err);
}

/* Starts a write transaction on the writer, holding the write lock until sq_end. */
static cp_status sq_begin(sq_index *sq, cp_error *err)
{
    cp_status st;

    pthread_mutex_lock(&sq->write_lock);
    st = sq_run_id(&sq->writer, S_BEGIN, "begin", err);
    if (st != CP_OK)
        pthread_mutex_unlock(&sq->write_lock);
    return st;
}

/* Commits when st is CP_OK, rolls back otherwise; releases the write lock. */
static cp_status sq_end(sq_index *sq, cp_status st, cp_error *err)
{
    if (st == CP_OK)
        st = sq_run_id(&sq->writer, S_COMMIT, "commit", err);
    if (st != CP_OK && sqlite3_get_autocommit(sq->writer.db) == 0)
        sq_run_id(&sq->writer, S_ROLLBACK, "rollback", NULL);
    pthread_mutex_unlock(&sq->write_lock);
    return st;
}

/* One request inside the group's transaction, under a savepoint of its own. */
static cp_status sq_put_request(sq_conn *c, sq_request *r, sq_fold *f)
{
    cp_status st = sq_run_id(c, S_SAVEPOINT, "savepoint", r->err);

    for (size_t i = 0; i < r->count && st == CP_OK; i++)
        st = sq_put_one(c, &r->recs[i], r->flags, f, &r->results[i], r->err);
    if (st != CP_OK) {
        /* Only this request's rows go; the rest of the group stays. */
        sq_run_id(c, S_ROLLBACK_TO, "rollback to savepoint", NULL);
        sq_run_id(c, S_RELEASE, "release savepoint", NULL);
        return st;
    }
    return sq_run_id(c, S_RELEASE, "release savepoint", r->err);
}

/* Refreshes the planner's statistics as the index grows (see SQ_ANALYZE_FIRST). */
static void sq_maybe_analyze(sq_index *sq, size_t stored)
{
    sq->stored += stored;
    if (sq->stored < sq->analyze_at)
        return;
    sq->stored = 0;
    sq->analyze_at = sq->analyze_at * 4 < SQ_ANALYZE_STEP_MAX ? sq->analyze_at * 4
                                                               : SQ_ANALYZE_STEP_MAX;
    /* Statistics only steer plans: a failure here costs speed, not data. */
    pthread_mutex_lock(&sq->write_lock);
    sqlite3_exec(sq->writer.db, "ANALYZE", NULL, NULL, NULL);
    pthread_mutex_unlock(&sq->write_lock);
}

/* Stores a group of requests in one transaction: one fsync for all of them. */
static void sq_commit_group(sq_index *sq, sq_request *group)
{
    sq_fold *f = cp_malloc(sizeof *f);
    cp_error failure;
    cp_status st;

    cp_error_clear(&failure);
    st = f != NULL ? sq_begin(sq, &failure)
                   : cp_error_set(&failure, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET,
                                  CP_ERROR_NO_TAG, NULL);
    if (st == CP_OK) {
        for (sq_request *r = group; r != NULL; r = r->next)
            r->status = sq_put_request(&sq->writer, r, f);
        st = sq_end(sq, CP_OK, &failure);
    }
    if (st == CP_OK) {
        size_t stored = 0;

        for (sq_request *r = group; r != NULL; r = r->next)
            stored += r->status == CP_OK ? r->count : 0;
        sq_maybe_analyze(sq, stored);
    }

    /* A group that did not commit fails every request in it. */
    for (sq_request *r = group; st != CP_OK && r != NULL; r = r->next) {
        if (r->status == CP_OK)
            r->status = cp_error_set(r->err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, "%s",
                                     failure.detail);
    }
    cp_free(f);
}

/*
 * Group commit: a put joins the queue; the first thread to find no leader
 * becomes one, takes everything queued and commits it as one transaction,
 * while later arrivals queue for the next group. With synchronous=FULL
 * every commit costs an fsync (milliseconds on most disks), so concurrent
 * associations share it instead of waiting for one each.
 */
static cp_status sq_put(void *impl, const index_instance_record *recs, size_t count,
                        unsigned flags, index_put_result *results, cp_error *err)
{
    sq_index *sq = impl;
    sq_request req = { recs, count, flags, results, err, CP_OK, false, NULL };

    pthread_mutex_lock(&sq->queue_lock);
    *sq->queue_tail = &req;
    sq->queue_tail = &req.next;

    while (!req.done) {
        sq_request *group, *next;

        if (sq->leading) {
            pthread_cond_wait(&sq->queue_done, &sq->queue_lock);
            continue;
        }
        sq->leading = true;
        group = sq->queue;
        sq->queue = NULL;
        sq->queue_tail = &sq->queue;
        pthread_mutex_unlock(&sq->queue_lock);

        sq_commit_group(sq, group);

        pthread_mutex_lock(&sq->queue_lock);
        /* Once done is set its owner may return: read next first. */
        for (sq_request *r = group; r != NULL; r = next) {
            next = r->next;
            r->done = true;
        }
        sq->leading = false;
        pthread_cond_broadcast(&sq->queue_done);
    }
    pthread_mutex_unlock(&sq->queue_lock);
    return req.status;
}

/* --- deleting ------------------------------------------------------------------ */

/* SOP UIDs and blob keys of what a delete removed, "uid\0key\0" after each other. */
typedef struct sq_removed {
    cp_buf list;
    size_t count;
} sq_removed;

static cp_status sq_delete_one(sq_conn *c, const char *sop_uid, sq_removed *out,
                               cp_error *err)
{
    sq_existing ex;
    int64_t seq;
    cp_status st = sq_find_instance(c, sop_uid, &ex, err);

    if (st != CP_OK)
        return st;
    if (ex.pk == 0)
        return cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "instance not indexed");
    if ((st = sq_remove_row(c, &ex, err)) != CP_OK)
        return st;
    if ((st = sq_prune(c, ex.series_pk, err)) != CP_OK)
        return st;
    st = sq_log(c, INDEX_CHANGE_DELETED, now_us(), ex.institution, ex.study_uid,
                ex.series_uid, sop_uid, &seq, err);
    if (st != CP_OK)
        return st;

    if (cp_buf_append(&out->list, sop_uid, strlen(sop_uid) + 1) != CP_OK ||
        cp_buf_append(&out->list, ex.blob_key, strlen(ex.blob_key) + 1) != CP_OK)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, NULL);
    out->count++;
    return CP_OK;
}

/* Collects the SOP UIDs a statement lists for a parent UID, NUL-separated. */
static cp_status sq_collect(sq_conn *c, sq_stmt_id id, const char *uid, cp_buf *out,
                            size_t *count, cp_error *err)
{
    sqlite3_stmt *s;
    cp_status st = sq_stmt(c, id, &s, err);
    int rc;

    if (st != CP_OK)
        return st;
    bind_text(s, 1, uid);
    *count = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *sop = (const char *)sqlite3_column_text(s, 0);

        if (cp_buf_append(out, sop, (size_t)sqlite3_column_bytes(s, 0) + 1) != CP_OK) {
            sq_done(s);
            return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                NULL);
        }
        (*count)++;
    }
    sq_done(s);
    if (rc != SQLITE_DONE)
        return sq_fail(c, rc, "list instances", err);
    if (*count == 0)
        return cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "nothing indexed under that UID");
    return CP_OK;
}

/*
 * Deletes one instance (id is S_COUNT) or everything a listing statement
 * names, in one transaction, then hands the removed blob keys to fn.
 */
static cp_status sq_delete(sq_index *sq, sq_stmt_id id, const char *uid, index_deleted_fn fn,
                           void *ctx, cp_error *err)
{
    sq_removed removed = { CP_BUF_INIT, 0 };
    cp_buf sops = CP_BUF_INIT;
    size_t count = 1;
    const char *p;
    cp_status st = sq_begin(sq, err);

    if (st != CP_OK)
        return st;
    if (id == S_COUNT)
        st = sq_delete_one(&sq->writer, uid, &removed, err);
    else
        st = sq_collect(&sq->writer, id, uid, &sops, &count, err);

    p = (const char *)sops.data;
    for (size_t i = 0; id != S_COUNT && st == CP_OK && i < count; i++) {
        st = sq_delete_one(&sq->writer, p, &removed, err);
        p += strlen(p) + 1;
    }
    st = sq_end(sq, st, err);
    if (st != CP_OK)
        goto done;

    p = (const char *)removed.list.data;
    for (size_t i = 0; fn != NULL && i < removed.count; i++) {
        const char *key = p + strlen(p) + 1;

        fn(ctx, p, key);
        p = key + strlen(key) + 1;
    }

done:
    cp_buf_free(&sops);
    cp_buf_free(&removed.list);
    return st;
}

static cp_status sq_delete_instance(void *impl, const char *sop_uid, index_deleted_fn fn,
                                    void *ctx, cp_error *err)
{
    return sq_delete(impl, S_COUNT, sop_uid, fn, ctx, err);
}

static cp_status sq_delete_series(void *impl, const char *series_uid, index_deleted_fn fn,
                                  void *ctx, cp_error *err)
{
    return sq_delete(impl, S_SOPS_OF_SERIES, series_uid, fn, ctx, err);
}

static cp_status sq_delete_study(void *impl, const char *study_uid, index_deleted_fn fn,
                                 void *ctx, cp_error *err)
{
    return sq_delete(impl, S_SOPS_OF_STUDY, study_uid, fn, ctx, err);
}

/* --- reading rows --------------------------------------------------------------- */

static uint32_t col_u32(sqlite3_stmt *s, int col)
{
    sqlite3_int64 v = sqlite3_column_int64(s, col);

    return v < 0 ? 0 : v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static int64_t col_number(sqlite3_stmt *s, int col)
{
    if (sqlite3_column_type(s, col) == SQLITE_NULL)
        return INDEX_NUMBER_NONE;
    return sqlite3_column_int64(s, col);
}

static void read_study(sqlite3_stmt *s, index_row *row)
{
    index_patient *p = &row->rec.patient;
    index_study *d = &row->rec.study;
    int c = COL_PATIENT;

    col_copy(s, c++, p->id, sizeof p->id);
    col_copy(s, c++, p->issuer, sizeof p->issuer);
    col_copy(s, c++, p->name.alphabetic, sizeof p->name.alphabetic);
    col_copy(s, c++, p->name.ideographic, sizeof p->name.ideographic);
    col_copy(s, c++, p->name.phonetic, sizeof p->name.phonetic);
    col_copy(s, c++, p->birth_date, sizeof p->birth_date);
    col_copy(s, c++, p->sex, sizeof p->sex);

    c = COL_STUDY;
    col_copy(s, c++, d->uid, sizeof d->uid);
    col_copy(s, c++, d->date, sizeof d->date);
    col_copy(s, c++, d->time, sizeof d->time);
    col_copy(s, c++, d->accession, sizeof d->accession);
    col_copy(s, c++, d->referring.alphabetic, sizeof d->referring.alphabetic);
    col_copy(s, c++, d->referring.ideographic, sizeof d->referring.ideographic);
    col_copy(s, c++, d->referring.phonetic, sizeof d->referring.phonetic);
    col_copy(s, c++, d->description, sizeof d->description);
    col_copy(s, c++, d->id, sizeof d->id);
    row->institution_id = sqlite3_column_int64(s, c++);
    row->study_series = col_u32(s, c++);
    row->study_instances = col_u32(s, c++);
    col_copy(s, c++, row->modalities_in_study, sizeof row->modalities_in_study);
    row->study_last_arrival_us = sqlite3_column_int64(s, c++);
}

static void read_series(sqlite3_stmt *s, index_row *row)
{
    index_series *d = &row->rec.series;
    int c = COL_SERIES;

    col_copy(s, c++, d->uid, sizeof d->uid);
    col_copy(s, c++, d->modality, sizeof d->modality);
    d->number = col_number(s, c++);
    col_copy(s, c++, d->description, sizeof d->description);
    col_copy(s, c++, d->body_part, sizeof d->body_part);
    col_copy(s, c++, d->date, sizeof d->date);
    col_copy(s, c++, d->time, sizeof d->time);
    row->institution_id = sqlite3_column_int64(s, c++);
    row->series_instances = col_u32(s, c++);
}

static void read_instance(sqlite3_stmt *s, index_row *row)
{
    index_instance *d = &row->rec.instance;
    const void *hash;
    int c = COL_INSTANCE;

    col_copy(s, c++, d->sop_uid, sizeof d->sop_uid);
    col_copy(s, c++, d->sop_class_uid, sizeof d->sop_class_uid);
    d->number = col_number(s, c++);
    col_copy(s, c++, d->transfer_syntax, sizeof d->transfer_syntax);
    d->frames = col_u32(s, c++);
    d->rows = col_u32(s, c++);
    d->columns = col_u32(s, c++);
    col_copy(s, c++, d->blob_key, sizeof d->blob_key);
    d->size = (uint64_t)sqlite3_column_int64(s, c++);
    hash = sqlite3_column_blob(s, c);
    if (hash != NULL && sqlite3_column_bytes(s, c) == INDEX_HASH_SIZE)
        memcpy(d->hash, hash, INDEX_HASH_SIZE);
    c++;
    col_copy(s, c++, d->source, sizeof d->source);
    d->institution_id = sqlite3_column_int64(s, c++);
    d->received_us = sqlite3_column_int64(s, c++);
    d->charset_flags = col_u32(s, c++);
    row->institution_id = d->institution_id;
}

/* Steps a row statement to its end, handing each row to fn; resets it. */
static cp_status sq_rows(sq_conn *c, sqlite3_stmt *s, index_level level, index_row_fn fn,
                         void *ctx, cp_error *err)
{
    index_row *row = cp_malloc(sizeof *row);
    cp_status st = CP_OK;
    int rc;

    if (row == NULL) {
        sq_done(s);
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, NULL);
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        memset(row, 0, sizeof *row);
        row->level = level;
        row->rec.series.number = INDEX_NUMBER_NONE;
        row->rec.instance.number = INDEX_NUMBER_NONE;
        read_study(s, row);
        if (level >= INDEX_LEVEL_SERIES)
            read_series(s, row);
        if (level == INDEX_LEVEL_INSTANCE)
            read_instance(s, row);

        st = fn(ctx, row);
        if (st != CP_OK)
            break;
    }
    if (st == CP_ERR_STOPPED)
        st = CP_OK;
    else if (st == CP_OK && rc != SQLITE_DONE)
        st = sq_fail(c, rc, "query", err);
    sq_done(s);
    cp_free(row);
    return st;
}

/* --- the change log and completeness ------------------------------------------------ */

static cp_status sq_changes_since(void *impl, int64_t position, size_t limit,
                                  index_change_fn fn, void *ctx, cp_error *err)
{
    sq_index *sq = impl;
    index_change ch;
    sqlite3_stmt *s;
    sq_conn *c;
    cp_status st = sq_acquire(sq, &c, err);
    int rc = SQLITE_DONE;

    if (st != CP_OK)
        return st;
    if ((st = sq_stmt(c, S_CHANGES, &s, err)) != CP_OK)
        goto done;
    sqlite3_bind_int64(s, 1, position);
    sqlite3_bind_int64(s, 2, limit == 0 ? -1 : (sqlite3_int64)limit);
    while (st == CP_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        ch.seq = sqlite3_column_int64(s, 0);
        ch.kind = (index_change_kind)sqlite3_column_int(s, 1);
        ch.time_us = sqlite3_column_int64(s, 2);
        ch.institution_id = sqlite3_column_int64(s, 3);
        col_copy(s, 4, ch.study_uid, sizeof ch.study_uid);
        col_copy(s, 5, ch.series_uid, sizeof ch.series_uid);
        col_copy(s, 6, ch.sop_uid, sizeof ch.sop_uid);
        st = fn(ctx, &ch);
    }
    if (st == CP_OK && rc != SQLITE_DONE)
        st = sq_fail(c, rc, "read changes", err);
    sq_done(s);

done:
    sq_release(sq, c);
    return st;
}

static cp_status sq_last_change(void *impl, int64_t *seq, cp_error *err)
{
    sq_index *sq = impl;
    sqlite3_stmt *s;
    sq_conn *c;
    cp_status st = sq_acquire(sq, &c, err);
    int rc;

    if (st != CP_OK)
        return st;
    if ((st = sq_stmt(c, S_LAST_CHANGE, &s, err)) == CP_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
            *seq = sqlite3_column_int64(s, 0);
        else
            st = sq_fail(c, rc, "read last change", err);
        sq_done(s);
    }
    sq_release(sq, c);
    return st;
}

static cp_status sq_quiet_studies(void *impl, int64_t cutoff_us, size_t limit,
                                  index_row_fn fn, void *ctx, cp_error *err)
{
    sq_index *sq = impl;
    sqlite3_stmt *s;
    sq_conn *c;
    cp_status st = sq_acquire(sq, &c, err);

    if (st != CP_OK)
        return st;
    if ((st = sq_stmt(c, S_QUIET, &s, err)) == CP_OK) {
        sqlite3_bind_int64(s, 1, cutoff_us);
        sqlite3_bind_int64(s, 2, limit == 0 ? -1 : (sqlite3_int64)limit);
        st = sq_rows(c, s, INDEX_LEVEL_STUDY, fn, ctx, err);
    }
    sq_release(sq, c);
    return st;
}

/* The completion goes on the change log, in the transaction that marks it. */
static cp_status sq_log_complete(sq_conn *c, const char *study_uid, cp_error *err)
{
    sqlite3_stmt *s;
    int64_t institution = 0, seq = 0;
    cp_status st = sq_stmt(c, S_STUDY_INSTITUTION, &s, err);
    int rc;

    if (st != CP_OK)
        return st;
    bind_text(s, 1, study_uid);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        institution = sqlite3_column_int64(s, 0);
    sq_done(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_fail(c, rc, "read study institution", err);
    return sq_log(c, INDEX_CHANGE_STUDY_COMPLETE, now_us(), institution, study_uid, "", "",
                  &seq, err);
}

static cp_status sq_mark_complete(void *impl, const char *study_uid, int64_t seen_arrival_us,
                                  cp_error *err)
{
    sq_index *sq = impl;
    sq_conn *c = &sq->writer;
    int64_t arrival;
    bool found;
    sqlite3_stmt *s;
    cp_status st = sq_begin(sq, err);
    int rc;

    if (st != CP_OK)
        return st;
    if ((st = sq_stmt(c, S_MARK, &s, err)) != CP_OK)
        goto done;
    bind_text(s, 1, study_uid);
    sqlite3_bind_int64(s, 2, seen_arrival_us);
    if ((st = sq_run(c, s, "mark complete", err)) != CP_OK)
        goto done;
    if (sqlite3_changes(c->db) > 0) {
        st = sq_log_complete(c, study_uid, err);
        goto done;
    }

    /* Nothing changed: either no such study or it grew since it was seen. */
    if ((st = sq_stmt(c, S_ARRIVAL, &s, err)) != CP_OK)
        goto done;
    bind_text(s, 1, study_uid);
    rc = sqlite3_step(s);
    found = rc == SQLITE_ROW;
    arrival = found ? sqlite3_column_int64(s, 0) : 0;
    sq_done(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        st = sq_fail(c, rc, "read arrival", err);
    else if (!found)
        st = cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "study not indexed");
    else if (arrival > seen_arrival_us)
        st = cp_error_set(err, CP_ERR_AGAIN, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "study received instances since");

done:
    /* AGAIN and NOT_FOUND changed nothing; commit keeps the lock logic simple. */
    if (st == CP_ERR_AGAIN || st == CP_ERR_NOT_FOUND) {
        sq_end(sq, CP_OK, NULL);
        return st;
    }
    return sq_end(sq, st, err);
}

/* --- queries ---------------------------------------------------------------------- */

/* Values to bind, in order: text kept in `text` at an offset, or an integer. */
typedef struct sq_bind {
    bool is_text;
    size_t offset;
    int64_t number;
} sq_bind;

typedef struct sq_builder {
    cp_buf sql;
    cp_buf text;
    sq_bind *binds;
    size_t bind_count, bind_cap;
    bool nomem;
} sq_builder;

static void b_sql(sq_builder *b, const char *s)
{
    if (cp_buf_append_str(&b->sql, s) != CP_OK)
        b->nomem = true;
}

static sq_bind *b_new_bind(sq_builder *b)
{
    if (b->bind_count == b->bind_cap) {
        size_t cap = b->bind_cap != 0 ? 2 * b->bind_cap : 16;
        sq_bind *grown = cp_realloc(b->binds, cap * sizeof *grown);

        if (grown == NULL) {
            b->nomem = true;
            return NULL;
        }
        b->binds = grown;
        b->bind_cap = cap;
    }
    return &b->binds[b->bind_count++];
}

/* Appends "?" to the SQL and binds len bytes of text to it. */
static void b_text(sq_builder *b, const char *s, size_t len)
{
    sq_bind *v = b_new_bind(b);

    b_sql(b, "?");
    if (v == NULL)
        return;
    v->is_text = true;
    v->offset = b->text.len;
    if (cp_buf_append(&b->text, s, len) != CP_OK || cp_buf_append_byte(&b->text, 0) != CP_OK)
        b->nomem = true;
}

static void b_int(sq_builder *b, int64_t n)
{
    sq_bind *v = b_new_bind(b);

    b_sql(b, "?");
    if (v == NULL)
        return;
    v->is_text = false;
    v->number = n;
}

/*
 * The matchable columns: one for most attributes; for PN the three folded
 * groups, and the owner of its words in name_word with their kind.
 */
typedef struct sq_column {
    const char *col;
    const char *groups[3];
    const char *owner;
    const char *word_kind;
} sq_column;

static const sq_column columns[INDEX_ATTR_COUNT] = {
    [INDEX_ATTR_PATIENT_ID] = { "p.patient_id", { NULL }, NULL, NULL },
    [INDEX_ATTR_ISSUER] = { "p.issuer", { NULL }, NULL, NULL },
    [INDEX_ATTR_PATIENT_NAME] = { NULL, { "p.name_a_lc", "p.name_i_lc", "p.name_p_lc" },
                                  "p.pk", "0" },
    [INDEX_ATTR_BIRTH_DATE] = { "p.birth_date", { NULL }, NULL, NULL },
    [INDEX_ATTR_SEX] = { "p.sex", { NULL }, NULL, NULL },
    [INDEX_ATTR_STUDY_UID] = { "st.uid", { NULL }, NULL, NULL },
    [INDEX_ATTR_STUDY_DATE] = { "st.date", { NULL }, NULL, NULL },
    [INDEX_ATTR_STUDY_TIME] = { "st.time", { NULL }, NULL, NULL },
    [INDEX_ATTR_ACCESSION] = { "st.accession", { NULL }, NULL, NULL },
    [INDEX_ATTR_REFERRING] = { NULL, { "st.ref_a_lc", "st.ref_i_lc", "st.ref_p_lc" },
                               "st.pk", "1" },
    [INDEX_ATTR_STUDY_DESCRIPTION] = { "st.description", { NULL }, NULL, NULL },
    [INDEX_ATTR_STUDY_ID] = { "st.study_id", { NULL }, NULL, NULL },
    [INDEX_ATTR_MODALITIES] = { "sx.modality", { NULL }, NULL, NULL },
    [INDEX_ATTR_SERIES_UID] = { "se.uid", { NULL }, NULL, NULL },
    [INDEX_ATTR_MODALITY] = { "se.modality", { NULL }, NULL, NULL },
    [INDEX_ATTR_SERIES_NUMBER] = { "se.number", { NULL }, NULL, NULL },
    [INDEX_ATTR_SERIES_DESCRIPTION] = { "se.description", { NULL }, NULL, NULL },
    [INDEX_ATTR_BODY_PART] = { "se.body_part", { NULL }, NULL, NULL },
    [INDEX_ATTR_SERIES_DATE] = { "se.date", { NULL }, NULL, NULL },
    [INDEX_ATTR_SERIES_TIME] = { "se.time", { NULL }, NULL, NULL },
    [INDEX_ATTR_SOP_UID] = { "i.sop_uid", { NULL }, NULL, NULL },
    [INDEX_ATTR_SOP_CLASS_UID] = { "i.sop_class_uid", { NULL }, NULL, NULL },
    [INDEX_ATTR_INSTANCE_NUMBER] = { "i.number", { NULL }, NULL, NULL },
};

static bool has_wildcard(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '*' || s[i] == '?')
            return true;
    }
    return false;
}

/* Whether len bytes are only '*' (or none): universal matching (PS3.4 C.2.2.2.3). */
static bool is_universal_n(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '*')
            return false;
    }
    return true;
}

/* GLOB pattern for a DICOM wildcard value: '*' and '?' stay, '[' is escaped. */
static cp_status glob_pattern(const char *s, size_t len, cp_buf *out)
{
    cp_status st = CP_OK;

    cp_buf_reset(out);
    for (size_t i = 0; i < len && st == CP_OK; i++) {
        if (s[i] == '[')
            st = cp_buf_append_str(out, "[[]");
        else
            st = cp_buf_append_byte(out, (uint8_t)s[i]);
    }
    if (st == CP_OK)
        st = cp_buf_reserve(out, 1);
    return st;
}

/*
 * col = v, or for a wildcard value col GLOB pattern, with the literal prefix
 * before the first wildcard as a range so that an index can seek.
 */
static void b_match_text(sq_builder *b, const char *col, const char *v, size_t len)
{
    size_t prefix = 0;
    cp_buf pat = CP_BUF_INIT;

    if (!has_wildcard(v, len)) {
        b_sql(b, col);
        b_sql(b, " = ");
        b_text(b, v, len);
        return;
    }
    while (prefix < len && v[prefix] != '*' && v[prefix] != '?')
        prefix++;

    b_sql(b, "(");
    if (prefix > 0) {
        b_sql(b, col);
        b_sql(b, " >= ");
        b_text(b, v, prefix);
        b_sql(b, " AND ");
        b_sql(b, col);
        b_sql(b, " < ");
        b_text(b, v, prefix);
        /* No UTF-8 byte is 0xFF, so bumping the last byte bounds the prefix. */
        if (!b->nomem)
            b->text.data[b->text.len - 2]++;
        b_sql(b, " AND ");
    }
    if (glob_pattern(v, len, &pat) != CP_OK)
        b->nomem = true;
    b_sql(b, col);
    b_sql(b, " GLOB ");
    b_text(b, pat.data != NULL ? (const char *)pat.data : "", pat.len);
    b_sql(b, ")");
    cp_buf_free(&pat);
}

/* col IN (v1, v2, ...) for a backslash-separated list. */
static cp_status b_match_list(sq_builder *b, const char *col, const char *v, cp_error *err)
{
    size_t count = 0;

    b_sql(b, col);
    b_sql(b, " IN (");
    for (const char *p = v;;) {
        const char *end = strchr(p, '\\');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);

        if (++count > INDEX_QUERY_LIST_MAX)
            return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                "list of more than %d values", INDEX_QUERY_LIST_MAX);
        if (count > 1)
            b_sql(b, ", ");
        b_text(b, p, len);
        if (end == NULL)
            break;
        p = end + 1;
    }
    b_sql(b, ")");
    return CP_OK;
}

static bool all_chars(const char *s, size_t len, const char *allowed)
{
    for (size_t i = 0; i < len; i++) {
        if (strchr(allowed, s[i]) == NULL || s[i] == '\0')
            return false;
    }
    return true;
}

/*
 * A DA or TM value: single or range. Bounds are compared as text, which
 * orders YYYYMMDD and HHMMSS.F correctly; an upper bound is extended with
 * '~' (above every digit) so that it includes everything it is a prefix of.
 */
static cp_status b_match_range(sq_builder *b, const char *col, const char *v, cp_error *err)
{
    const char *dash = strchr(v, '-');
    size_t len = strlen(v);
    char upper[INDEX_TM_MAX + 2];
    size_t lo_len, hi_len;

    if (!all_chars(v, len, "0123456789.:-") || (dash != NULL && strchr(dash + 1, '-')) ||
        len > 2 * INDEX_TM_MAX + 1 || (dash != NULL && len == 1))
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "malformed date or time value");
    if (dash == NULL) {
        b_match_text(b, col, v, len);
        return CP_OK;
    }

    lo_len = (size_t)(dash - v);
    hi_len = len - lo_len - 1;
    if (lo_len > INDEX_TM_MAX || hi_len > INDEX_TM_MAX)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "malformed date or time range");
    b_sql(b, "(");
    b_sql(b, col);
    b_sql(b, " <> ''");
    if (lo_len > 0) {
        b_sql(b, " AND ");
        b_sql(b, col);
        b_sql(b, " >= ");
        b_text(b, v, lo_len);
    }
    if (hi_len > 0) {
        memcpy(upper, dash + 1, hi_len);
        upper[hi_len] = '~';
        b_sql(b, " AND ");
        b_sql(b, col);
        b_sql(b, " <= ");
        b_text(b, upper, hi_len + 1);
    }
    b_sql(b, ")");
    return CP_OK;
}

static cp_status b_match_number(sq_builder *b, const char *col, const char *v, cp_error *err)
{
    char *end;
    long long n;

    while (*v == ' ')
        v++;
    n = strtoll(v, &end, 10);
    while (*end == ' ')
        end++;
    if (end == v || *end != '\0')
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "not an integer");
    b_sql(b, col);
    b_sql(b, " = ");
    b_int(b, n);
    return CP_OK;
}

/* Folds a PN query value into a scratch buffer owned by the builder's caller. */
static cp_status fold_value(const char *v, cp_buf *out)
{
    cp_status st;

    cp_buf_reset(out);
    st = cp_buf_reserve(out, strlen(v) + 1);
    if (st == CP_OK) {
        fold_utf8(v, (char *)out->data);
        out->len = strlen((char *)out->data);
    }
    return st;
}

/*
 * Fuzzy PN: every word of the value starts some word of the name, in any
 * group. Each word is a prefix seek in name_word.
 */
static void b_match_fuzzy(sq_builder *b, const sq_column *c, const char *folded)
{
    cp_buf word = CP_BUF_INIT;
    const char *p = folded;

    b_sql(b, "(1");
    while (*p != '\0') {
        size_t len = strcspn(p, "^ =");

        if (len > 0 && !is_universal_n(p, len)) {
            cp_buf_reset(&word);
            if (cp_buf_append(&word, p, len) != CP_OK || cp_buf_append_byte(&word, '*') != CP_OK)
                b->nomem = true;
            b_sql(b, " AND ");
            b_sql(b, c->owner);
            b_sql(b, " IN (SELECT owner_pk FROM name_word WHERE kind = ");
            b_sql(b, c->word_kind);
            b_sql(b, " AND ");
            if (!b->nomem)
                b_match_text(b, "word", (const char *)word.data, word.len);
            b_sql(b, ")");
        }
        p += len;
        if (*p != '\0')
            p++;
    }
    b_sql(b, ")");
    cp_buf_free(&word);
}

/*
 * PN: a value without '=' matches any group; with '=', each non-empty group
 * of the value matches the same group of the name.
 */
static void b_match_pn(sq_builder *b, const sq_column *c, const char *folded)
{
    const char *groups[3] = { folded, NULL, NULL };
    size_t lens[3] = { strlen(folded), 0, 0 };
    const char *eq = strchr(folded, '=');
    bool any_group = eq == NULL;
    bool first = true;

    if (!any_group) {
        lens[0] = (size_t)(eq - folded);
        groups[1] = eq + 1;
        eq = strchr(groups[1], '=');
        lens[1] = eq != NULL ? (size_t)(eq - groups[1]) : strlen(groups[1]);
        if (eq != NULL) {
            groups[2] = eq + 1;
            lens[2] = strcspn(groups[2], "=");
        }
    }

    b_sql(b, "(");
    for (int g = 0; g < 3; g++) {
        const char *v = any_group ? folded : groups[g];
        size_t len = any_group ? lens[0] : lens[g];

        if (v == NULL || is_universal_n(v, len))
            continue;
        if (!first)
            b_sql(b, any_group ? " OR " : " AND ");
        b_match_text(b, c->groups[g], v, len);
        first = false;
    }
    if (first)
        b_sql(b, "1");
    b_sql(b, ")");
}

/* Appends " AND <condition>" for one term; universal terms add nothing. */
static cp_status b_term(sq_builder *b, const index_attr_info *info, const char *v,
                        unsigned flags, cp_buf *scratch, cp_error *err)
{
    const sq_column *c = &columns[info->id];
    size_t len = strlen(v);
    cp_status st;

    if (is_universal_n(v, len))
        return CP_OK;
    b_sql(b, " AND ");

    switch (info->kind) {
    case INDEX_KIND_TEXT:
        if (strchr(v, '\\') != NULL && !has_wildcard(v, len))
            return b_match_list(b, c->col, v, err);
        b_match_text(b, c->col, v, len);
        return CP_OK;
    case INDEX_KIND_UID:
        if (has_wildcard(v, len))
            return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, info->tag,
                                "wildcard in a UID key");
        return b_match_list(b, c->col, v, err);
    case INDEX_KIND_DATE:
    case INDEX_KIND_TIME:
        return b_match_range(b, c->col, v, err);
    case INDEX_KIND_NUMBER:
        return b_match_number(b, c->col, v, err);
    case INDEX_KIND_MODALITIES:
        if (has_wildcard(v, len))
            return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, info->tag,
                                "wildcard in ModalitiesInStudy");
        b_sql(b, "EXISTS (SELECT 1 FROM series sx WHERE sx.study_pk = st.pk AND ");
        st = b_match_list(b, c->col, v, err);
        b_sql(b, ")");
        return st;
    case INDEX_KIND_PN:
        if (fold_value(v, scratch) != CP_OK)
            return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                NULL);
        if (flags & INDEX_QUERY_FUZZY)
            b_match_fuzzy(b, c, (const char *)scratch->data);
        else
            b_match_pn(b, c, (const char *)scratch->data);
        return CP_OK;
    }
    return cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, info->tag,
                        "no matching rule");
}

static const char *const level_select[] = {
    [INDEX_LEVEL_STUDY] = "SELECT " PATIENT_COLS ", " STUDY_COLS FROM_STUDY " WHERE 1",
    [INDEX_LEVEL_SERIES] = "SELECT " PATIENT_COLS ", " STUDY_COLS ", " SERIES_COLS
                           FROM_SERIES " WHERE 1",
    [INDEX_LEVEL_INSTANCE] = "SELECT " PATIENT_COLS ", " STUDY_COLS ", " SERIES_COLS ", "
                             INSTANCE_COLS FROM_INSTANCE " WHERE 1",
};

static const char *const level_alias[] = {
    [INDEX_LEVEL_STUDY] = "st", [INDEX_LEVEL_SERIES] = "se", [INDEX_LEVEL_INSTANCE] = "i",
};

/* The institution filter, then ORDER BY, LIMIT and OFFSET. */
static void b_tail(sq_builder *b, const index_query_spec *q)
{
    const char *alias = level_alias[q->level];

    size_t also = q->also_studies != NULL ? q->also_study_count : 0;

    if (q->institutions != NULL && q->institution_count == 0 && also == 0)
        b_sql(b, " AND 0");
    if (q->institutions != NULL && (q->institution_count > 0 || also > 0)) {
        b_sql(b, " AND (0");
        if (q->institution_count > 0) {
            b_sql(b, " OR ");
            b_sql(b, alias);
            b_sql(b, ".institution_id IN (");
            for (size_t i = 0; i < q->institution_count; i++) {
                if (i > 0)
                    b_sql(b, ", ");
                b_int(b, q->institutions[i]);
            }
            b_sql(b, ")");
        }
        if (also > 0) {
            b_sql(b, " OR st.uid IN (");
            for (size_t i = 0; i < also; i++) {
                if (i > 0)
                    b_sql(b, ", ");
                b_text(b, q->also_studies[i], strlen(q->also_studies[i]));
            }
            b_sql(b, ")");
        }
        b_sql(b, ")");
    }
    b_sql(b, " ORDER BY ");
    b_sql(b, alias);
    b_sql(b, ".pk LIMIT ");
    b_int(b, q->limit == 0 || q->limit > INT64_MAX ? -1 : (int64_t)q->limit);
    b_sql(b, " OFFSET ");
    b_int(b, q->offset > INT64_MAX ? INT64_MAX : (int64_t)q->offset);
}

static cp_status sq_build(sq_builder *b, const index_query_spec *q, cp_error *err)
{
    cp_buf scratch = CP_BUF_INIT;
    cp_status st = CP_OK;

    b_sql(b, level_select[q->level]);
    for (size_t i = 0; i < q->term_count && st == CP_OK; i++) {
        const index_attr_info *info = index_attribute_find(q->terms[i].attribute);

        st = b_term(b, info, q->terms[i].value, q->flags, &scratch, err);
    }
    if (st == CP_OK)
        b_tail(b, q);
    cp_buf_free(&scratch);

    if (st == CP_OK && b->nomem)
        st = cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, NULL);
    if (st == CP_OK && b->bind_count > SQ_BINDS_MAX)
        st = cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "query needs %zu values, more than %d", b->bind_count,
                          SQ_BINDS_MAX);
    return st;
}

static cp_status sq_query(void *impl, const index_query_spec *q, index_row_fn fn, void *ctx,
                          cp_error *err)
{
    sq_index *sq = impl;
    sq_builder b = { CP_BUF_INIT, CP_BUF_INIT, NULL, 0, 0, false };
    sqlite3_stmt *s;
    sq_conn *c = NULL;
    cp_status st = sq_build(&b, q, err);

    if (st != CP_OK)
        goto done;
    if ((st = sq_acquire(sq, &c, err)) != CP_OK)
        goto done;
    if ((st = sq_cached_stmt(c, (const char *)b.sql.data, &s, err)) != CP_OK)
        goto done;

    for (size_t i = 0; i < b.bind_count; i++) {
        const sq_bind *v = &b.binds[i];

        if (v->is_text)
            sqlite3_bind_text(s, (int)i + 1, (const char *)b.text.data + v->offset, -1,
                              SQLITE_STATIC);
        else
            sqlite3_bind_int64(s, (int)i + 1, v->number);
    }
    st = sq_rows(c, s, q->level, fn, ctx, err);

done:
    if (c != NULL)
        sq_release(sq, c);
    cp_buf_free(&b.sql);
    cp_buf_free(&b.text);
    cp_free(b.binds);
    return st;
}

/* --- opening and closing ------------------------------------------------------------ */

static cp_status sq_schema_version(void *impl, int *version, cp_error *err)
{
    sq_index *sq = impl;
    sq_conn *c;
    cp_status st = sq_acquire(sq, &c, err);

    if (st != CP_OK)
        return st;
    st = sq_read_version(c, version, err);
    sq_release(sq, c);
    return st;
}

static void sq_destroy(void *impl)
{
    sq_index *sq = impl;

    for (size_t i = 0; i < sq->reader_count; i++)
        sq_conn_close(&sq->readers[i]);
    if (sq->writer.db != NULL) {
        /* Keeps the planner's statistics fresh at a cost of milliseconds. */
        sqlite3_exec(sq->writer.db, "PRAGMA optimize", NULL, NULL, NULL);
        sq_conn_close(&sq->writer);
    }
    pthread_cond_destroy(&sq->pool_free);
    pthread_mutex_destroy(&sq->pool_lock);
    pthread_cond_destroy(&sq->queue_done);
    pthread_mutex_destroy(&sq->queue_lock);
    pthread_mutex_destroy(&sq->write_lock);
    cp_free(sq->path);
    cp_free(sq);
}

static const index_backend sqlite_backend = {
    .name = "sqlite",
    .schema_version = sq_schema_version,
    .put = sq_put,
    .delete_instance = sq_delete_instance,
    .delete_series = sq_delete_series,
    .delete_study = sq_delete_study,
    .changes_since = sq_changes_since,
    .last_change = sq_last_change,
    .quiet_studies = sq_quiet_studies,
    .mark_complete = sq_mark_complete,
    .query = sq_query,
    .destroy = sq_destroy,
};

cp_status index_open_sqlite(const char *path, index_db **out, cp_error *err)
{
    sq_index *sq;
    cp_status st;

    *out = NULL;
    if (sqlite3_threadsafe() == 0)
        return cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "SQLite was built without thread support");
    sq = cp_calloc(1, sizeof *sq);
    if (sq == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, NULL);
    pthread_mutex_init(&sq->write_lock, NULL);
    pthread_mutex_init(&sq->pool_lock, NULL);
    pthread_cond_init(&sq->pool_free, NULL);
    pthread_mutex_init(&sq->queue_lock, NULL);
    pthread_cond_init(&sq->queue_done, NULL);
    sq->queue_tail = &sq->queue;

    sq->path = cp_strdup(path);
    if (sq->path == NULL) {
        st = cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, NULL);
        goto fail;
    }
    if ((st = sq_conn_open(&sq->writer, path, false, err)) != CP_OK)
        goto fail;
    if ((st = sq_migrate(&sq->writer, err)) != CP_OK)
        goto fail;
    sq->analyze_at = SQ_ANALYZE_FIRST;
    st = sq_exec(&sq->writer, "PRAGMA analysis_limit=" SQ_STR(SQ_ANALYSIS_LIMIT) ";"
                              " PRAGMA optimize=0x10002;", err);
    if (st != CP_OK)
        goto fail;

    *out = index_create(&sqlite_backend, sq);
    if (*out == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, NULL);
    return CP_OK;

fail:
    sq_destroy(sq);
    return st;
}

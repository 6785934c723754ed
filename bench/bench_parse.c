/*
 * bench_parse.c - how many instances per second cloudpacs turns into index
 * rows.
 *
 * For every file named (directories are walked), reads the Part 10 file
 * (PS3.10 section 7) up to Pixel Data and takes from its data set (PS3.5
 * section 7) the attributes one row of the index holds at the patient,
 * study, series and instance levels (PS3.4 C.6.1.1), with the text that
 * follows Specific Character Set decoded to UTF-8 (PS3.5 section 6.1) and
 * Patient's Name split into its component groups (PS3.5 6.2.1.2). The
 * whole list is read --passes times, and the rate is printed as
 *
 *   figure parse_headers.cloudpacs <instances/s> instances/s
 *
 * timed by process CPU time, which a busy machine disturbs less than wall
 * time (--clock wall for wall time).
 *
 * With --print, one pass is made and each row is written as tab-separated
 * text instead, so that bench/parse.sh can compare the values with what
 * pydicom reads from the same files.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/status.h"
#include "dicom/charset.h"
#include "dicom/dataset.h"
#include "dicom/tag.h"
#include "dicom/ts.h"

/* The attributes of an index row (PS3.6 gives their tags). */
#define TAG_SOP_CLASS_UID       DCM_TAG(0x0008, 0x0016)
#define TAG_SOP_INSTANCE_UID    DCM_TAG(0x0008, 0x0018)
#define TAG_STUDY_DATE          DCM_TAG(0x0008, 0x0020)
#define TAG_STUDY_TIME          DCM_TAG(0x0008, 0x0030)
#define TAG_ACCESSION_NUMBER    DCM_TAG(0x0008, 0x0050)
#define TAG_MODALITY            DCM_TAG(0x0008, 0x0060)
#define TAG_STUDY_DESCRIPTION   DCM_TAG(0x0008, 0x1030)
#define TAG_PATIENT_NAME        DCM_TAG(0x0010, 0x0010)
#define TAG_PATIENT_ID          DCM_TAG(0x0010, 0x0020)
#define TAG_PATIENT_BIRTH_DATE  DCM_TAG(0x0010, 0x0030)
#define TAG_PATIENT_SEX         DCM_TAG(0x0010, 0x0040)
#define TAG_BODY_PART_EXAMINED  DCM_TAG(0x0018, 0x0015)
#define TAG_STUDY_INSTANCE_UID  DCM_TAG(0x0020, 0x000D)
#define TAG_SERIES_INSTANCE_UID DCM_TAG(0x0020, 0x000E)
#define TAG_SERIES_NUMBER       DCM_TAG(0x0020, 0x0011)
#define TAG_INSTANCE_NUMBER     DCM_TAG(0x0020, 0x0013)
#define TAG_NUMBER_OF_FRAMES    DCM_TAG(0x0028, 0x0008)
#define TAG_ROWS                DCM_TAG(0x0028, 0x0010)
#define TAG_COLUMNS             DCM_TAG(0x0028, 0x0011)

/*
 * Decoders kept open, keyed by the raw Specific Character Set value: an
 * importer sees a handful of distinct values, and opening the iconv
 * converters for every file would measure iconv_open, not the reader.
 */
#define CHARSET_SLOTS   8
#define CHARSET_KEY_MAX 64

/* A UID is at most 64 characters (PS3.5 9.1); the other fields are shorter. */
#define UID_SIZE   68
#define FIELD_SIZE 32

typedef struct charset_slot {
    uint8_t key[CHARSET_KEY_MAX];
    size_t key_len;
    dcm_charset *cs;
} charset_slot;

typedef struct index_row {
    cp_buf patient_id;              /* decoded UTF-8, padding removed */
    cp_buf patient_name;
    cp_buf accession;
    cp_buf study_description;
    char birth_date[FIELD_SIZE];
    char sex[FIELD_SIZE];
    char study_uid[UID_SIZE];
    char series_uid[UID_SIZE];
    char sop_uid[UID_SIZE];
    char sop_class[UID_SIZE];
    char study_date[FIELD_SIZE];
    char study_time[FIELD_SIZE];
    char modality[FIELD_SIZE];
    char body_part[FIELD_SIZE];
    char transfer_syntax[UID_SIZE];
    long series_number;             /* -1 when absent */
    long instance_number;
    long frames;                    /* 1 when Number of Frames is absent */
    uint64_t rows;
    uint64_t columns;
} index_row;

typedef struct bench {
    charset_slot slots[CHARSET_SLOTS];
    size_t slots_used;
    index_row row;
    uint64_t checksum;              /* keeps every extracted value live */
    cp_buf dir;                     /* the directory open as dir_fd */
    int dir_fd;                     /* -1 when none is open */
} bench;

typedef struct path_list {
    char **paths;
    size_t count;
    size_t cap;
} path_list;

static void usage(FILE *out)
{
    fputs("usage: bench_parse [--passes K] [--clock cpu|wall] [--print]\n"
          "                   [--files-from LIST] [PATH...]\n"
          "  Reads the header of each DICOM file (directories are walked)\n"
          "  and extracts the attributes of an index row, K times (default 1).\n"
          "  --clock cpu|wall   rate by process CPU time (default: steady on a\n"
          "                     busy machine) or by wall time\n"
          "  --files-from LIST  read paths from LIST, one per line\n"
          "  --print            one pass, printing each row as TSV\n",
          out);
}

static cp_status list_add(path_list *list, const char *path)
{
    char *copy;

    if (list->count == list->cap) {
        size_t cap = list->cap == 0 ? 1024 : list->cap * 2;
        char **paths = cp_realloc(list->paths, cap * sizeof *paths);

        if (paths == NULL)
            return CP_ERR_NOMEM;
        list->paths = paths;
        list->cap = cap;
    }

    copy = cp_strdup(path);
    if (copy == NULL)
        return CP_ERR_NOMEM;
    list->paths[list->count++] = copy;
    return CP_OK;
}

static void list_free(path_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        cp_free(list->paths[i]);
    cp_free(list->paths);
    list->paths = NULL;
    list->count = list->cap = 0;
}

/* Adds path if it is a file, or every file below it if it is a directory. */
static cp_status list_walk(path_list *list, const char *path)
{
    struct stat st;
    DIR *dir = NULL;
    struct dirent *entry;
    cp_buf child = CP_BUF_INIT;
    cp_status status = CP_OK;

    if (stat(path, &st) != 0) {
        fprintf(stderr, "bench_parse: %s: %s\n", path, strerror(errno));
        return CP_ERR_IO;
    }
    if (!S_ISDIR(st.st_mode))
        return S_ISREG(st.st_mode) ? list_add(list, path) : CP_OK;

    dir = opendir(path);
    if (dir == NULL) {
        fprintf(stderr, "bench_parse: %s: %s\n", path, strerror(errno));
        return CP_ERR_IO;
    }

    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        cp_buf_reset(&child);
        status = cp_buf_appendf(&child, "%s/%s", path, entry->d_name);
        if (status != CP_OK)
            goto done;
        status = list_walk(list, (const char *)child.data);
        if (status != CP_OK)
            goto done;
    }

done:
    closedir(dir);
    cp_buf_free(&child);
    return status;
}

static cp_status list_read(path_list *list, const char *list_path)
{
    FILE *in;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    cp_status status = CP_OK;

    in = fopen(list_path, "r");
    if (in == NULL) {
        fprintf(stderr, "bench_parse: %s: %s\n", list_path, strerror(errno));
        return CP_ERR_IO;
    }

    while ((len = getline(&line, &cap, in)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        status = list_add(list, line);
        if (status != CP_OK)
            break;
    }

    free(line);     /* allocated by getline, not by cp_malloc */
    fclose(in);
    return status;
}

static int compare_paths(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The decoder for the character set that applies to ds, from the cache when
 * its raw value was seen before. *owned is set when the caller must destroy
 * it (the cache is full, or the value is too long to be a key).
 */
static cp_status bench_charset(bench *b, const dcm_dataset *ds, dcm_charset **out,
                               bool *owned)
{
    const uint8_t *value;
    size_t len;
    charset_slot *slot;
    cp_status status;

    dcm_dataset_charset(ds, &value, &len);
    *owned = false;
    for (size_t i = 0; i < b->slots_used; i++) {
        slot = &b->slots[i];
        if (slot->key_len == len && (len == 0 || memcmp(slot->key, value, len) == 0)) {
            *out = slot->cs;
            return CP_OK;
        }
    }

    status = dcm_charset_create(value, len, NULL, out, NULL);
    if (status != CP_OK)
        return status;

    if (b->slots_used == CHARSET_SLOTS || len > CHARSET_KEY_MAX) {
        *owned = true;
        return CP_OK;
    }
    slot = &b->slots[b->slots_used++];
    if (len > 0)
        memcpy(slot->key, value, len);
    slot->key_len = len;
    slot->cs = *out;
    return CP_OK;
}

/* Drops the padding that dcm_charset_decode keeps (PS3.5 6.2). */
static void trim_padding(cp_buf *buf)
{
    while (buf->len > 0 && (buf->data[buf->len - 1] == ' ' || buf->data[buf->len - 1] == '\0'))
        buf->len--;
    if (buf->data != NULL)
        buf->data[buf->len] = '\0';
}

/* The UTF-8 text of the element `tag` of ds into out; empty when absent. */
static cp_status decode_text(dcm_charset *cs, const dcm_dataset *ds, uint32_t tag,
                             cp_buf *out)
{
    const dcm_element *el = dcm_dataset_get(ds, tag);
    cp_status status;

    cp_buf_reset(out);
    if (el == NULL || el->value == NULL || el->value_length == 0)
        return CP_OK;

    status = dcm_charset_decode(cs, el->vr, el->value, (size_t)el->value_length, out,
                                NULL);
    if (status != CP_OK)
        return status;
    trim_padding(out);
    return CP_OK;
}

/* A string attribute that is ASCII by its VR (UI, DA, TM, CS); "" when absent. */
static void get_ascii(const dcm_dataset *ds, uint32_t tag, char *out, size_t size)
{
    if (dcm_dataset_get_string(ds, tag, out, size) != CP_OK)
        out[0] = '\0';
}

/* An Integer String attribute; `absent` when missing or not a number. */
static long get_is(const dcm_dataset *ds, uint32_t tag, long absent)
{
    char text[FIELD_SIZE];
    char *end;
    long value;

    if (dcm_dataset_get_string(ds, tag, text, sizeof text) != CP_OK)
        return absent;
    errno = 0;
    value = strtol(text, &end, 10);
    return errno == 0 && end != text ? value : absent;
}

static uint64_t get_us(const dcm_dataset *ds, uint32_t tag)
{
    const dcm_element *el = dcm_dataset_get(ds, tag);
    uint64_t value;

    if (el == NULL || dcm_element_get_uint(ds, el, 0, &value) != CP_OK)
        return 0;
    return value;
}

static cp_status row_decode_text(bench *b, const dcm_dataset *ds)
{
    index_row *row = &b->row;
    dcm_charset *cs;
    bool owned;
    cp_status status;

    status = bench_charset(b, ds, &cs, &owned);
    if (status != CP_OK)
        return status;

    status = decode_text(cs, ds, TAG_PATIENT_NAME, &row->patient_name);
    if (status == CP_OK)
        status = decode_text(cs, ds, TAG_PATIENT_ID, &row->patient_id);
    if (status == CP_OK)
        status = decode_text(cs, ds, TAG_ACCESSION_NUMBER, &row->accession);
    if (status == CP_OK)
        status = decode_text(cs, ds, TAG_STUDY_DESCRIPTION, &row->study_description);

    if (owned)
        dcm_charset_destroy(cs);
    return status;
}

/* Copies the C string text into out (size bytes), cut short if it must be. */
static void copy_text(char *out, size_t size, const char *text)
{
    size_t len = strlen(text);

    if (len > size - 1)
        len = size - 1;
    memcpy(out, text, len);
    out[len] = '\0';
}

static void row_extract_fixed(index_row *row, const dcm_file *file)
{
    const dcm_dataset *ds = file->dataset;

    get_ascii(ds, TAG_PATIENT_BIRTH_DATE, row->birth_date, sizeof row->birth_date);
    get_ascii(ds, TAG_PATIENT_SEX, row->sex, sizeof row->sex);
    get_ascii(ds, TAG_STUDY_INSTANCE_UID, row->study_uid, sizeof row->study_uid);
    get_ascii(ds, TAG_SERIES_INSTANCE_UID, row->series_uid, sizeof row->series_uid);
    get_ascii(ds, TAG_SOP_INSTANCE_UID, row->sop_uid, sizeof row->sop_uid);
    get_ascii(ds, TAG_SOP_CLASS_UID, row->sop_class, sizeof row->sop_class);
    get_ascii(ds, TAG_STUDY_DATE, row->study_date, sizeof row->study_date);
    get_ascii(ds, TAG_STUDY_TIME, row->study_time, sizeof row->study_time);
    get_ascii(ds, TAG_MODALITY, row->modality, sizeof row->modality);
    get_ascii(ds, TAG_BODY_PART_EXAMINED, row->body_part, sizeof row->body_part);
    row->series_number = get_is(ds, TAG_SERIES_NUMBER, -1);
    row->instance_number = get_is(ds, TAG_INSTANCE_NUMBER, -1);
    row->frames = get_is(ds, TAG_NUMBER_OF_FRAMES, 1);
    row->rows = get_us(ds, TAG_ROWS);
    row->columns = get_us(ds, TAG_COLUMNS);

    row->transfer_syntax[0] = '\0';
    if (file->transfer_syntax != NULL)
        copy_text(row->transfer_syntax, sizeof row->transfer_syntax,
                  file->transfer_syntax->uid);
}

static void print_field(FILE *out, const char *text, size_t len)
{
    fputc('\t', out);
    fwrite(text, 1, len, out);
}

static void print_number(FILE *out, long value, long absent)
{
    if (value == absent)
        fputc('\t', out);
    else
        fprintf(out, "\t%ld", value);
}

static void print_buf(FILE *out, const cp_buf *buf)
{
    print_field(out, buf->len > 0 ? (const char *)buf->data : "", buf->len);
}

/*
 * One row as TSV, in the column order of bench/parse_pydicom.py:
 * path, patient id, name (alphabetic, ideographic), birth date, sex, study,
 * series and SOP instance UIDs, SOP class, accession, study date and time,
 * modality, body part, series and instance numbers, study description, rows,
 * columns, frames, transfer syntax.
 */
static void row_print(FILE *out, const char *path, const index_row *row)
{
    dcm_person_name pn;
    const char *name = row->patient_name.len > 0 ? (const char *)row->patient_name.data : "";

    dcm_person_name_split(name, row->patient_name.len, &pn);
    fputs(path, out);
    print_buf(out, &row->patient_id);
    print_field(out, pn.alphabetic, pn.alphabetic_len);
    print_field(out, pn.ideographic, pn.ideographic_len);
    fprintf(out, "\t%s\t%s\t%s\t%s\t%s\t%s", row->birth_date, row->sex, row->study_uid,
            row->series_uid, row->sop_uid, row->sop_class);
    print_buf(out, &row->accession);
    fprintf(out, "\t%s\t%s\t%s\t%s", row->study_date, row->study_time, row->modality,
            row->body_part);
    print_number(out, row->series_number, -1);
    print_number(out, row->instance_number, -1);
    print_buf(out, &row->study_description);
    fprintf(out, "\t%" PRIu64 "\t%" PRIu64 "\t%ld\t%s\n", row->rows, row->columns,
            row->frames, row->transfer_syntax);
}

/*
 * The directory to open path from and the name within it. As an importer
 * walking an archive does, the directory of a series is opened once and its
 * files by name relative to it: the kernel resolves the directory's path
 * once, not for every file. The list is sorted, so a directory's files come
 * together; opening the directory is timed with the files.
 */
static cp_status bench_dir(bench *b, const char *path, int *dir_fd, const char **name)
{
    const char *slash;
    size_t len = b->dir.len;
    cp_status status;

    /* Most often the file is in the directory of the one before. */
    if (b->dir_fd >= 0 && strncmp((const char *)b->dir.data, path, len) == 0 &&
        path[len] == '/' && strchr(path + len + 1, '/') == NULL) {
        *dir_fd = b->dir_fd;
        *name = path + len + 1;
        return CP_OK;
    }

    slash = strrchr(path, '/');
    *dir_fd = AT_FDCWD;
    *name = path;
    if (slash == NULL || slash == path)
        return CP_OK;
    len = (size_t)(slash - path);
    *name = slash + 1;

    if (b->dir_fd >= 0)
        close(b->dir_fd);
    b->dir_fd = -1;
    cp_buf_reset(&b->dir);
    status = cp_buf_append(&b->dir, path, len);
    if (status != CP_OK)
        return status;
    /* O_PATH: the descriptor only anchors openat, so the directory is not opened for I/O. */
    b->dir_fd = open((const char *)b->dir.data, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (b->dir_fd < 0) {
        fprintf(stderr, "bench_parse: %s: %s\n", (const char *)b->dir.data, strerror(errno));
        return CP_ERR_IO;
    }
    *dir_fd = b->dir_fd;
    return CP_OK;
}

/* Reads one file and fills b->row; prints it when out is not NULL. */
static cp_status bench_file(bench *b, const char *path, FILE *out)
{
    dcm_read_options opts = { .stop_before = DCM_TAG_PIXEL_DATA };
    dcm_file *file = NULL;
    dcm_person_name pn;
    const char *name;
    cp_error err;
    cp_status status;
    int dir_fd;
    char message[CP_ERROR_DETAIL_MAX + 64];

    cp_error_clear(&err);
    status = bench_dir(b, path, &dir_fd, &name);
    if (status != CP_OK)
        goto done;
    status = dcm_file_read_path_at(dir_fd, name, &opts, &file, &err);
    if (status != CP_OK) {
        fprintf(stderr, "bench_parse: %s: %s\n", path,
                cp_error_format(&err, message, sizeof message));
        goto done;
    }

    row_extract_fixed(&b->row, file);
    status = row_decode_text(b, file->dataset);
    if (status != CP_OK) {
        fprintf(stderr, "bench_parse: %s: %s\n", path, cp_status_summary(status));
        goto done;
    }

    /* An index stores the groups apart, for search by either script. */
    dcm_person_name_split(b->row.patient_name.len > 0 ? (const char *)b->row.patient_name.data
                                                      : "",
                          b->row.patient_name.len, &pn);
    b->checksum += pn.alphabetic_len + pn.ideographic_len + b->row.rows
                 + (uint64_t)b->row.instance_number + strlen(b->row.sop_uid);
    if (out != NULL)
        row_print(out, path, &b->row);

done:
    if (file != NULL)
        dcm_file_destroy(file);
    return status;
}

static void bench_free(bench *b)
{
    if (b->dir_fd >= 0)
        close(b->dir_fd);
    b->dir_fd = -1;
    cp_buf_free(&b->dir);
    for (size_t i = 0; i < b->slots_used; i++)
        dcm_charset_destroy(b->slots[i].cs);
    b->slots_used = 0;
    cp_buf_free(&b->row.patient_id);
    cp_buf_free(&b->row.patient_name);
    cp_buf_free(&b->row.accession);
    cp_buf_free(&b->row.study_description);
}

static double seconds_now(clockid_t clock)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct options {
    long passes;
    bool print;
    bool wall;                      /* rate by wall time instead of CPU time */
    const char *files_from;
} options;

/* Returns the index of the first path argument, or -1 after a usage error. */
static int parse_options(int argc, char **argv, options *opts)
{
    int i;

    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        const char *arg = argv[i];
        char *end;

        if (strcmp(arg, "--") == 0)
            return i + 1;
        if (strcmp(arg, "--print") == 0) {
            opts->print = true;
        } else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(arg, "--passes") == 0 && i + 1 < argc) {
            opts->passes = strtol(argv[++i], &end, 10);
            if (*end != '\0' || opts->passes < 1)
                return -1;
        } else if (strcmp(arg, "--files-from") == 0 && i + 1 < argc) {
            opts->files_from = argv[++i];
        } else if (strcmp(arg, "--clock") == 0 && i + 1 < argc) {
            arg = argv[++i];
            if (strcmp(arg, "wall") != 0 && strcmp(arg, "cpu") != 0)
                return -1;
            opts->wall = strcmp(arg, "wall") == 0;
        } else {
            return -1;
        }
    }
    return i;
}

static cp_status collect(const options *opts, int argc, char **argv, int first,
                         path_list *list)
{
    cp_status status = CP_OK;

    if (opts->files_from != NULL)
        status = list_read(list, opts->files_from);
    for (int i = first; i < argc && status == CP_OK; i++)
        status = list_walk(list, argv[i]);
    if (status == CP_OK && list->count > 1)
        qsort(list->paths, list->count, sizeof *list->paths, compare_paths);
    return status;
}

int main(int argc, char **argv)
{
    options opts = { .passes = 1 };
    path_list list = { 0 };
    bench b = { .dir_fd = -1 };
    size_t failed = 0;
    double wall, cpu;
    int first, rc = 1;

    first = parse_options(argc, argv, &opts);
    if (first < 0) {
        usage(stderr);
        return 2;
    }
    if (opts.print)
        opts.passes = 1;

    if (collect(&opts, argc, argv, first, &list) != CP_OK)
        goto done;
    if (list.count == 0) {
        fputs("bench_parse: no files\n", stderr);
        goto done;
    }

    wall = seconds_now(CLOCK_MONOTONIC);
    cpu = seconds_now(CLOCK_PROCESS_CPUTIME_ID);
    for (long pass = 0; pass < opts.passes; pass++) {
        for (size_t i = 0; i < list.count; i++) {
            if (bench_file(&b, list.paths[i], opts.print ? stdout : NULL) != CP_OK)
                failed++;
        }
    }
    cpu = seconds_now(CLOCK_PROCESS_CPUTIME_ID) - cpu;
    wall = seconds_now(CLOCK_MONOTONIC) - wall;

    if (!opts.print) {
        uint64_t instances = (uint64_t)list.count * (uint64_t)opts.passes - failed;
        double elapsed = opts.wall ? wall : cpu;

        printf("figure parse_headers.cloudpacs %.0f instances/s\n",
               elapsed > 0 ? (double)instances / elapsed : 0.0);
        printf("# parse_headers.cloudpacs: %zu files x %ld passes = %" PRIu64
               " instances in %.3f s wall, %.3f s cpu, %zu failed (check %" PRIu64
               ")\n", list.count, opts.passes, instances, wall, cpu, failed, b.checksum);
    }
    rc = failed == 0 ? 0 : 1;

done:
    bench_free(&b);
    list_free(&list);
    return rc;
}

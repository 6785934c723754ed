/*
 * cmd_dump.c - `cloudpacs dump`: the elements of DICOM files, as a listing
 * for people (dump.h) or as the DICOM JSON model of PS3.18 Annex F (json.h).
 *
 * Each file is read with its source kept open, so that values left in the
 * file (above the bulk threshold) can still be shown or inlined. A malformed
 * file still has what was read before the fault printed, then one message on
 * stderr naming the offset and the tag, and the next file is read.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/buf.h"
#include "core/status.h"
#include "dicom/charset.h"
#include "dicom/dataset.h"
#include "dicom/dump.h"
#include "dicom/io.h"
#include "dicom/json.h"
#include "dicom/tag.h"

/*
 * Values above this stay in the file while it is dumped. Binary values up to
 * it are inlined in JSON; larger ones get a file:// BulkDataURI.
 */
#define DUMP_BULK_THRESHOLD (64u * 1024)

/* Widest value a user may ask the text listing to show. */
#define DUMP_WIDTH_MAX 100000

typedef struct dump_args {
    bool json;
    bool pretty;
    bool no_pixel;
    bool no_meta;
    bool help;
    size_t width;
    dcm_charset_policy policy;
} dump_args;

/* What the BulkDataURI hook needs: the file's absolute path, percent-encoded. */
typedef struct dump_uri_ctx {
    cp_buf path;
} dump_uri_ctx;

void cli_dump_usage(FILE *out)
{
    fprintf(out,
        "usage: cloudpacs dump [options] FILE...\n"
        "\n"
        "Prints the elements of DICOM files (Part 10 files or bare data sets).\n"
        "\n"
        "options:\n"
        "  --json                  DICOM JSON (PS3.18 Annex F) of the data set (the\n"
        "                          File Meta Information left out) instead of the\n"
        "                          listing; one object per file, each on its own\n"
        "                          line (JSON Lines) unless --pretty is given, when\n"
        "                          the objects follow one another; binary values over\n"
        "                          64 KiB and encapsulated pixel data get a BulkDataURI\n"
        "                          \"file://PATH#offset=O&length=L\" (bytes as stored)\n"
        "  --pretty                indent the JSON\n"
        "  --no-pixel              stop reading before the pixel data (7FE0,0010)\n"
        "  --no-meta               leave the File Meta Information out of the listing\n"
        "  --width N               characters of a value shown in the listing\n"
        "                          (default %d)\n"
        "  --charset TERM          decode text as TERM (\"GB18030\") whatever\n"
        "                          Specific Character Set (0008,0005) says, with\n"
        "                          no detection of mislabelled text\n"
        "  --default-charset TERM  decode text as TERM when there is no (0008,0005)\n"
        "  -h, --help              this text\n"
        "\n"
        "Text that was guessed or mislabelled is noted in the listing's header, and\n"
        "on stderr with --json (the JSON itself stays standard).\n"
        "\n"
        "exit status: 0 when every file was dumped; 1 when a file could not be\n"
        "opened or read (this wins over 3); 3 when a file was malformed (what was\n"
        "read before the fault is printed, the fault on stderr); 2 on bad options.\n",
        DCM_DUMP_WIDTH_DEFAULT);
}

/* --- options ----------------------------------------------------------- */

/* The value of an option given as "--name VALUE" or "--name=VALUE"; NULL if none. */
static const char *option_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    const char *arg = argv[*i];

    if (strncmp(arg, name, n) != 0)
        return NULL;
    if (arg[n] == '=')
        return arg + n + 1;
    if (arg[n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "cloudpacs dump: %s needs a value\n", name);
        return "";
    }
    return argv[++*i];
}

static bool charset_ok(const char *option, const char *term)
{
    if (term[0] != '\0' && dcm_charset_is_known(term, strlen(term)))
        return true;
    if (term[0] != '\0')
        fprintf(stderr, "cloudpacs dump: %s: unknown character set \"%s\"\n", option, term);
    return false;
}

/* Parses the options; *first_file is the index of the first FILE. */
static bool parse_args(int argc, char **argv, dump_args *args, int *first_file)
{
    int i;

    memset(args, 0, sizeof(*args));
    args->width = DCM_DUMP_WIDTH_DEFAULT;
    args->policy.detect = true;

    for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
        const char *arg = argv[i];
        const char *value;

        if (strcmp(arg, "--") == 0) {
            i++;
            break;
        } else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            args->help = true;
            return true;
        } else if (strcmp(arg, "--json") == 0) {
            args->json = true;
        } else if (strcmp(arg, "--pretty") == 0) {
            args->pretty = true;
        } else if (strcmp(arg, "--no-pixel") == 0) {
            args->no_pixel = true;
        } else if (strcmp(arg, "--no-meta") == 0) {
            args->no_meta = true;
        } else if ((value = option_value(argc, argv, &i, "--charset")) != NULL) {
            if (!charset_ok("--charset", value))
                return false;
            /* A user who names the set means it: no second-guessing the bytes. */
            args->policy.override_charset = value;
            args->policy.detect = false;
        } else if ((value = option_value(argc, argv, &i, "--default-charset")) != NULL) {
            if (!charset_ok("--default-charset", value))
                return false;
            args->policy.default_charset = value;
        } else if ((value = option_value(argc, argv, &i, "--width")) != NULL) {
            char *end;
            long width = strtol(value, &end, 10);

            if (value[0] == '\0')
                return false;
            if (*end != '\0' || width < 1 || width > DUMP_WIDTH_MAX) {
                fprintf(stderr, "cloudpacs dump: --width wants a number from 1 to %d\n",
                        DUMP_WIDTH_MAX);
                return false;
            }
            args->width = (size_t)width;
        } else {
            fprintf(stderr, "cloudpacs dump: unknown option \"%s\"\n", arg);
            return false;
        }
    }
    if (i >= argc) {
        fprintf(stderr, "cloudpacs dump: no FILE given\n");
        return false;
    }
    *first_file = i;
    return true;
}

/* --- BulkDataURI ------------------------------------------------------- */

/* The absolute path of a file, percent-encoded for a file:// URI (RFC 8089). */
static cp_status uri_path(const char *path, cp_buf *out)
{
    char *resolved = realpath(path, NULL);
    const char *p = resolved != NULL ? resolved : path;
    cp_status st = CP_OK;

    for (; *p != '\0' && st == CP_OK; p++) {
        unsigned char c = (unsigned char)*p;

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~' || c == '/')
            st = cp_buf_append_byte(out, c);
        else
            st = cp_buf_appendf(out, "%%%02X", c);
    }
    free(resolved);
    return st;
}

static cp_status bulk_uri(void *ctx, const dcm_element *el, const uint32_t *path,
                          size_t depth, cp_buf *uri)
{
    const dump_uri_ctx *u = ctx;

    (void)path;
    (void)depth;
    return cp_buf_appendf(uri, "file://%s#offset=%llu&length=%llu", (const char *)u->path.data,
                          (unsigned long long)el->offset,
                          (unsigned long long)el->value_length);
}

/* --- one file ---------------------------------------------------------- */

static void report(const char *path, const cp_error *err)
{
    char text[CP_ERROR_DETAIL_MAX + 128];

    fflush(stdout);
    fprintf(stderr, "cloudpacs dump: %s: %s\n", path, cp_error_format(err, text, sizeof(text)));
}

/* The exit status a failure calls for: a file that is not DICOM, or one that failed. */
static int failure_exit(cp_status st)
{
    return st == CP_ERR_IO || st == CP_ERR_NOMEM ? CLI_EXIT_FAILURE : CLI_EXIT_DATA;
}

static cp_status write_json(const char *path, const dcm_file *file, dcm_source *src,
                            const dump_args *args, cp_error *err)
{
    dcm_sink sink = dcm_sink_to_file(stdout);
    dump_uri_ctx uri_ctx;
    dcm_json_options opts;
    dcm_dump_options scan;
    unsigned flags = 0;
    char text[256];
    cp_status st;

    memset(&opts, 0, sizeof(opts));
    memset(&scan, 0, sizeof(scan));
    cp_buf_init(&uri_ctx.path);
    if (uri_path(path, &uri_ctx.path) != CP_OK) {
        st = cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "no memory for the file's URI");
        goto done;
    }
    opts.inline_max = DUMP_BULK_THRESHOLD;
    opts.bulk_uri = bulk_uri;
    opts.bulk_uri_ctx = &uri_ctx;
    opts.source = src;
    opts.charset_policy = &args->policy;
    opts.pretty = args->pretty;
    opts.skip_group_length = true;

    st = dcm_json_write_dataset(file->dataset, &opts, &sink, err);
    /* Ends the line even after a failure, so that the next file's line stays whole. */
    if (dcm_sink_write(&sink, "\n", 1) != CP_OK && st == CP_OK)
        st = cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "the output could not be written");
    if (st != CP_OK)
        goto done;

    scan.source = src;
    scan.charset_policy = &args->policy;
    if (dcm_dump_charset_flags(file->dataset, &scan, &flags, NULL) == CP_OK &&
        (flags & (DCM_CHARSET_GUESSED | DCM_CHARSET_MISLABELLED | DCM_CHARSET_REPLACED)) != 0) {
        fflush(stdout);
        fprintf(stderr, "cloudpacs dump: %s: note: text %s\n", path,
                dcm_dump_describe_charset_flags(flags, text, sizeof(text)));
    }

done:
    cp_buf_free(&uri_ctx.path);
    return st;
}

static cp_status write_text(const dcm_file *file, dcm_source *src, const dump_args *args,
                            cp_error *err)
{
    dcm_sink sink = dcm_sink_to_file(stdout);
    dcm_dump_options opts;

    memset(&opts, 0, sizeof(opts));
    opts.source = src;
    opts.charset_policy = &args->policy;
    opts.max_width = args->width;
    opts.show_meta = !args->no_meta;
    return dcm_dump_write(file, &opts, &sink, err);
}

/* Dumps one file; returns its exit status. */
static int dump_file(const char *path, const dump_args *args, bool many)
{
    dcm_read_options ropts;
    dcm_source *src = NULL;
    dcm_file *file = NULL;
    cp_error err, out_err;
    cp_status st, out;
    int rc = CLI_EXIT_OK;

    cp_error_clear(&err);
    cp_error_clear(&out_err);
    st = dcm_source_open_file(path, &src, &err);
    if (st != CP_OK) {
        report(path, &err);
        return CLI_EXIT_FAILURE;
    }

    memset(&ropts, 0, sizeof(ropts));
    ropts.bulk_threshold = DUMP_BULK_THRESHOLD;
    ropts.stop_before = args->no_pixel ? DCM_TAG_PIXEL_DATA : 0;
    st = dcm_file_read(src, &ropts, &file, &err);
    if (st == CP_ERR_STOPPED)
        st = CP_OK;

    if (file != NULL) {
        if (many && !args->json)
            printf("# %s\n", path);
        if (args->json)
            out = write_json(path, file, src, args, &out_err);
        else
            out = write_text(file, src, args, &out_err);
        if (many && !args->json && out == CP_OK)
            printf("\n");
        /* After a read error, the fault that matters is the read's: say only that. */
        if (out != CP_OK && st == CP_OK) {
            report(path, &out_err);
            rc = failure_exit(out);
        }
    }
    if (st != CP_OK) {
        report(path, &err);
        rc = failure_exit(st);
    }

    if (file != NULL)
        dcm_file_destroy(file);
    dcm_source_destroy(src);
    return rc;
}

int cli_dump_run(int argc, char **argv)
{
    dump_args args;
    int first_file;
    int rc = CLI_EXIT_OK;

    if (!parse_args(argc, argv, &args, &first_file)) {
        fprintf(stderr, "usage: cloudpacs dump [options] FILE... (see --help)\n");
        return CLI_EXIT_USAGE;
    }
    if (args.help) {
        cli_dump_usage(stdout);
        return CLI_EXIT_OK;
    }

    for (int i = first_file; i < argc; i++) {
        int file_rc = dump_file(argv[i], &args, argc - first_file > 1);

        if (file_rc == CLI_EXIT_FAILURE || (file_rc == CLI_EXIT_DATA && rc == CLI_EXIT_OK))
            rc = file_rc;
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "cloudpacs dump: the output could not be written\n");
        return CLI_EXIT_FAILURE;
    }
    return rc;
}

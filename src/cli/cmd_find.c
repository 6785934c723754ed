/*
 * cmd_find.c - `cloudpacs find`: C-FIND as SCU (PS3.7 9.1.2) in the Study
 * Root or Patient Root Query/Retrieve information model (PS3.4 C.6), as
 * DCMTK's findscu does, printing the matches as a table or as DICOM JSON
 * (PS3.18 F.2). Values with more than ASCII go out in UTF-8 (ISO_IR 192)
 * unless a SpecificCharacterSet key says otherwise.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/buf.h"
#include "core/limits.h"
#include "dicom/charset.h"
#include "dicom/dataset.h"
#include "dicom/dict.h"
#include "dicom/io.h"
#include "dicom/json.h"
#include "dicom/tag.h"
#include "dicom/ts.h"
#include "dicom/writer.h"
#include "net/pdu.h"
#include "net/scu.h"

#define FIND_STUDY_ROOT "1.2.840.10008.5.1.4.1.2.2.1"
#define FIND_PATIENT_ROOT "1.2.840.10008.5.1.4.1.2.1.1"

/* Keys one command line gives at most. */
#define FIND_KEYS_MAX 64

typedef struct find_key {
    uint32_t tag;
    dcm_vr vr;
    const char *value;
} find_key;

typedef struct find_args {
    const char *aet;
    const char *aec;
    const char *host;
    long port;
    const char *level;
    bool patient_root;
    bool json;
    find_key keys[FIND_KEYS_MAX + 2];
    size_t key_count;
} find_args;

void cli_find_usage(FILE *out)
{
    fprintf(out,
        "usage: cloudpacs find [options] HOST PORT -k KEY[=VALUE]...\n"
        "\n"
        "Sends a C-FIND to the peer at HOST PORT and prints the matches.\n"
        "KEY is a keyword (PatientName) or a tag (0010,0010); a value matches\n"
        "as PS3.4 C.2.2.2 says (Wang*, 20200101-20201231, UID lists with \\).\n"
        "\n"
        "options:\n"
        "  --aet TITLE      our (calling) AE title (default CLOUDPACS_FIND)\n"
        "  --aec TITLE      the peer's (called) AE title (default CLOUDPACS)\n"
        "  --level LEVEL    patient, study (default), series or image\n"
        "  --patient-root   the Patient Root model (default: Study Root)\n"
        "  --json           the matches as a JSON array of DICOM JSON objects\n"
        "  -h, --help       this text\n"
        "\n"
        "exit status: 0 when the query succeeded; 1 when the peer answered a\n"
        "failure; 2 on bad options; 5 when the peer could not be reached.\n");
}

static bool parse_key(const char *text, find_key *k)
{
    const char *eq = strchr(text, '=');
    size_t len = eq != NULL ? (size_t)(eq - text) : strlen(text);
    const dcm_dict_entry *e = NULL;
    unsigned g, el;
    char end;

    if (len == 9 && sscanf(text, "%4x,%4x%c", &g, &el, &end) >= 2)
        e = dcm_dict_lookup(DCM_TAG(g, el));
    else
        e = dcm_dict_lookup_keyword(text, len);
    if (e == NULL || e->vr == DCM_VR_NONE)
        return false;
    k->tag = e->tag;
    k->vr = e->vr;
    k->value = eq != NULL ? eq + 1 : "";
    return true;
}

static int parse_args(int argc, char **argv, find_args *a)
{
    static const char *const levels[] = { "patient", "study", "series", "image" };
    int pos = 0;
    bool level_ok = false;

    a->aet = "CLOUDPACS_FIND";
    a->aec = "CLOUDPACS";
    a->level = "study";
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end;

        if (strcmp(argv[i], "--aet") == 0 && v != NULL) {
            a->aet = argv[++i];
        } else if (strcmp(argv[i], "--aec") == 0 && v != NULL) {
            a->aec = argv[++i];
        } else if (strcmp(argv[i], "--level") == 0 && v != NULL) {
            a->level = argv[++i];
        } else if (strcmp(argv[i], "--patient-root") == 0) {
            a->patient_root = true;
        } else if (strcmp(argv[i], "--json") == 0) {
            a->json = true;
        } else if (strcmp(argv[i], "-k") == 0 && v != NULL && a->key_count < FIND_KEYS_MAX &&
                   parse_key(v, &a->keys[a->key_count])) {
            a->key_count++;
            i++;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            cli_find_usage(stdout);
            return -1;
        } else if (argv[i][0] != '-' && pos == 0) {
            a->host = argv[i];
            pos++;
        } else if (argv[i][0] != '-' && pos == 1) {
            a->port = strtol(argv[i], &end, 10);
            if (*end != '\0' || a->port < 1 || a->port > 65535)
                break;
            pos++;
        } else {
            fprintf(stderr, "cloudpacs find: bad argument \"%s\"\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
    }
    for (size_t i = 0; i < 4; i++)
        level_ok = level_ok || strcmp(a->level, levels[i]) == 0;
    if (pos != 2 || !level_ok || !pdu_ae_is_valid(a->aet, strlen(a->aet)) ||
        !pdu_ae_is_valid(a->aec, strlen(a->aec))) {
        cli_find_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

/* --- the identifier ------------------------------------------------------- */

static int by_tag(const void *x, const void *y)
{
    const find_key *a = x, *b = y;

    return a->tag < b->tag ? -1 : a->tag > b->tag;
}

static bool non_ascii(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s > 0x7F)
            return true;
    }
    return false;
}

/* Adds the level and, when needed, the character set; sorts the keys. */
static void complete_keys(find_args *a, const char *level)
{
    bool have_cs = false, need_cs = false;

    for (size_t i = 0; i < a->key_count; i++) {
        have_cs = have_cs || a->keys[i].tag == DCM_TAG_SPECIFIC_CHARACTER_SET;
        need_cs = need_cs || non_ascii(a->keys[i].value);
    }
    a->keys[a->key_count++] = (find_key){ DCM_TAG(0x0008, 0x0052), DCM_VR_CS, level };
    if (need_cs && !have_cs)
        a->keys[a->key_count++] = (find_key){ DCM_TAG_SPECIFIC_CHARACTER_SET, DCM_VR_CS,
                                              "ISO_IR 192" };
    qsort(a->keys, a->key_count, sizeof a->keys[0], by_tag);
}

static cp_status encode_identifier(const find_args *a, const dcm_transfer_syntax *ts,
                                   cp_buf *out)
{
    cp_status st = CP_OK;

    for (size_t i = 0; st == CP_OK && i < a->key_count; i++) {
        const find_key *k = &a->keys[i];
        uint8_t hdr[DCM_WRITE_HEADER_MAX];
        size_t len = k->vr == DCM_VR_SQ ? 0 : strlen(k->value);
        size_t n = dcm_write_header(hdr, k->tag, k->vr, (uint32_t)(len + (len & 1)),
                                    ts->explicit_vr, false);

        st = cp_buf_append(out, hdr, n);
        if (st == CP_OK)
            st = cp_buf_append(out, k->value, len);
        if (st == CP_OK && (len & 1))
            st = cp_buf_append_byte(out, k->vr == DCM_VR_UI ? 0 : (uint8_t)' ');
    }
    return st;
}

/* --- the matches ---------------------------------------------------------- */

static void print_row(const find_args *a, const dcm_dataset *ds)
{
    const uint8_t *csv;
    size_t cslen;
    dcm_charset *cs = NULL;
    cp_buf text = CP_BUF_INIT;

    dcm_dataset_charset(ds, &csv, &cslen);
    if (dcm_charset_create(csv, cslen, NULL, &cs, NULL) != CP_OK)
        return;
    for (size_t i = 0; i < a->key_count; i++) {
        const dcm_element *el = dcm_dataset_get(ds, a->keys[i].tag);

        if (a->keys[i].tag == DCM_TAG_SPECIFIC_CHARACTER_SET)
            continue;
        cp_buf_reset(&text);
        if (el != NULL && el->value != NULL && dcm_vr_is_string(el->vr))
            dcm_charset_decode(cs, el->vr, el->value, (size_t)el->value_length, &text, NULL);
        while (text.len > 0 && (text.data[text.len - 1] == ' ' || text.data[text.len - 1] == 0))
            text.len--;
        printf("%s%.*s", i == 0 ? "" : "\t", (int)text.len, (const char *)text.data);
    }
    printf("\n");
    cp_buf_free(&text);
    dcm_charset_destroy(cs);
}

static void print_header(const find_args *a)
{
    for (size_t i = 0; i < a->key_count; i++) {
        const dcm_dict_entry *e = dcm_dict_lookup(a->keys[i].tag);

        if (a->keys[i].tag == DCM_TAG_SPECIFIC_CHARACTER_SET)
            continue;
        printf("%s%s", i == 0 ? "" : "\t", e != NULL ? e->keyword : "?");
    }
    printf("\n");
}

static cp_status print_match(const find_args *a, const cp_buf *data, const char *ts_uid,
                             size_t n)
{
    dcm_read_options opts = { 0 };
    dcm_source *src = dcm_source_from_memory(data->data, data->len);
    dcm_file *file = NULL;
    dcm_sink sink = dcm_sink_to_file(stdout);
    cp_status st;

    if (src == NULL)
        return CP_ERR_NOMEM;
    opts.no_meta = true;
    opts.assume_ts = dcm_ts_lookup(ts_uid, strlen(ts_uid));
    st = dcm_file_read(src, &opts, &file, NULL);
    if (st == CP_OK && a->json) {
        fputs(n == 0 ? "[\n" : ",\n", stdout);
        st = dcm_json_write_dataset(file->dataset, NULL, &sink, NULL);
    } else if (st == CP_OK) {
        print_row(a, file->dataset);
    }
    dcm_file_destroy(file);
    dcm_source_destroy(src);
    return st;
}

static int run_query(const find_args *a, scu *u, const char *sop_class)
{
    const char *ts_uid = NULL;
    uint8_t pc = scu_context_for(u, sop_class, &ts_uid);
    dimse_command cmd, rsp;
    cp_buf ident = CP_BUF_INIT, data = CP_BUF_INIT;
    size_t matches = 0;
    cp_error err;
    int rc = CLI_EXIT_OK;

    cp_error_clear(&err);
    memset(&cmd, 0, sizeof cmd);
    cmd.command_field = DIMSE_C_FIND_RQ;
    cmd.data_set_type = 0x0000;
    cmd.fields = DIMSE_F_AFFECTED_SOP_CLASS | DIMSE_F_PRIORITY;
    cmd.priority = DIMSE_PRIORITY_MEDIUM;
    snprintf(cmd.affected_sop_class, sizeof cmd.affected_sop_class, "%s", sop_class);
    if (encode_identifier(a, dcm_ts_lookup(ts_uid, strlen(ts_uid)), &ident) != CP_OK ||
        scu_send_command(u, pc, &cmd, &err) != CP_OK ||
        scu_send_data(u, pc, ident.data, ident.len, true, &err) != CP_OK) {
        fprintf(stderr, "cloudpacs find: %s\n", err.detail);
        rc = CLI_EXIT_FAILURE;
        goto done;
    }
    if (!a->json)
        print_header(a);
    for (;;) {
        if (scu_wait_response_data(u, &rsp, &data, &err) != CP_OK) {
            fprintf(stderr, "cloudpacs find: %s\n", err.detail);
            rc = CLI_EXIT_FAILURE;
            break;
        }
        if (rsp.status != 0xFF00 && rsp.status != 0xFF01) {
            if (rsp.status != 0x0000) {
                fprintf(stderr, "cloudpacs find: C-FIND status 0x%04x %s\n", rsp.status,
                        rsp.error_comment);
                rc = CLI_EXIT_FAILURE;
            }
            break;
        }
        if (data.len > 0 && print_match(a, &data, ts_uid, matches) == CP_OK)
            matches++;
    }
    if (a->json)
        fputs(matches == 0 ? "[]\n" : "\n]\n", stdout);

done:
    cp_buf_free(&ident);
    cp_buf_free(&data);
    return rc;
}

int cli_find_run(int argc, char **argv)
{
    static const char *const ts[] = { "1.2.840.10008.1.2.1", "1.2.840.10008.1.2" };
    static find_args a;
    const char *sop_class;
    char level[16];
    scu_proposal prop;
    scu_config cfg;
    scu *u = NULL;
    cp_error err;
    int rc;

    memset(&a, 0, sizeof a);
    rc = parse_args(argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc == -1 ? CLI_EXIT_OK : rc;
    for (size_t i = 0; i < sizeof level - 1 && a.level[i] != '\0'; i++) {
        level[i] = (char)(a.level[i] - 'a' + 'A');
        level[i + 1] = '\0';
    }
    complete_keys(&a, level);
    sop_class = a.patient_root ? FIND_PATIENT_ROOT : FIND_STUDY_ROOT;
    prop = (scu_proposal){ sop_class, ts, 2 };

    memset(&cfg, 0, sizeof cfg);
    cfg.calling_ae = a.aet;
    cfg.called_ae = a.aec;
    cfg.host = a.host;
    cfg.port = (uint16_t)a.port;
    cp_error_clear(&err);
    if (scu_connect(&cfg, &prop, 1, &u, &err) != CP_OK) {
        fprintf(stderr, "cloudpacs find: %s port %ld: %s\n", a.host, a.port, err.detail);
        return CLI_EXIT_UNAVAILABLE;
    }
    rc = run_query(&a, u, sop_class);
    if (scu_release(u, &err) != CP_OK && rc == CLI_EXIT_OK)
        rc = CLI_EXIT_FAILURE;
    scu_destroy(u);
    return rc;
}

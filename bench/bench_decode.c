/*
 * bench_decode.c - how many frames per second cloudpacs decodes.
 *
 * Every file named is read once (PS3.10 section 7; the pixel data is left
 * in the file and read per frame, as the server does) and described by
 * px_image_init (PS3.3 C.7.6.3). Then, --passes times, each frame is
 * located (px_frame_bytes: PS3.5 8.1.1 or A.4) and decoded to samples
 * (px_decode_frame: native, RLE Lossless of PS3.5 Annex G, JPEG lossless
 * of ITU T.81 Annex H, ...). Only that loop is timed, by process CPU time
 * (--clock wall for wall time). Per transfer syntax family it prints
 *
 *   figure decode.<syntax>.cloudpacs <frames/s> frames/s
 *   figure decode.<syntax>.cloudpacs_mpixels <megapixels/s> megapixels/s
 *
 * where <syntax> is native, rle, jpeg_lossless, jpeg, jpegls, j2k, htj2k,
 * deflate_frame or the UID. A frame that fails to decode fails the run.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/status.h"
#include "dicom/dataset.h"
#include "dicom/io.h"
#include "dicom/ts.h"
#include "pixel/pixel.h"

#define SYNTAX_SLOTS 16

typedef struct syntax_stats {
    const char *name;
    uint64_t frames;
    uint64_t pixels;
    double cpu, wall;
} syntax_stats;

typedef struct opened {
    const char *path;
    dcm_source *src;
    dcm_file *file;
    px_image img;
    syntax_stats *stats;
} opened;

static double seconds_now(clockid_t clock)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *syntax_name(const dcm_transfer_syntax *ts)
{
    static const struct {
        const char *prefix;
        const char *name;
    } families[] = {
        { "1.2.840.10008.1.2.4.57", "jpeg_lossless" },
        { "1.2.840.10008.1.2.4.70", "jpeg_lossless" },
        { "1.2.840.10008.1.2.4.50", "jpeg" },
        { "1.2.840.10008.1.2.4.51", "jpeg" },
        { "1.2.840.10008.1.2.4.8", "jpegls" },
        { "1.2.840.10008.1.2.4.9", "j2k" },
        { "1.2.840.10008.1.2.4.20", "htj2k" },
        { "1.2.840.10008.1.2.5", "rle" },
        { "1.2.840.10008.1.2.8.1", "deflate_frame" },
    };

    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        if (strncmp(ts->uid, families[i].prefix, strlen(families[i].prefix)) == 0)
            return families[i].name;
    }
    return ts->encapsulated ? ts->uid : "native";
}

static syntax_stats *stats_for(syntax_stats *slots, size_t *count, const char *name)
{
    for (size_t i = 0; i < *count; i++) {
        if (strcmp(slots[i].name, name) == 0)
            return &slots[i];
    }
    if (*count == SYNTAX_SLOTS)
        return NULL;
    slots[*count].name = name;
    return &slots[(*count)++];
}

static cp_status open_file(opened *o, const char *path)
{
    cp_error err;
    cp_status st;

    cp_error_clear(&err);
    o->path = path;
    st = dcm_source_open_file(path, &o->src, &err);
    if (st == CP_OK)
        st = dcm_file_read(o->src, NULL, &o->file, &err);
    if (st == CP_OK)
        st = px_image_init(&o->img, o->file, o->src, &err);
    if (st != CP_OK)
        fprintf(stderr, "bench_decode: %s: %s: %s\n", path, cp_status_summary(st),
                err.detail);
    return st;
}

static void close_file(opened *o)
{
    px_image_clear(&o->img);
    dcm_file_destroy(o->file);
    dcm_source_destroy(o->src);
}

/* Decodes every frame of o once; the checksum keeps the work from being optimised away. */
static cp_status decode_all(opened *o, cp_buf *bytes, uint64_t *checksum)
{
    for (uint32_t k = 0; k < o->img.frames; k++) {
        px_frame frame;
        cp_error err;
        cp_status st;

        cp_error_clear(&err);
        cp_buf_reset(bytes);
        st = px_frame_bytes(&o->img, o->src, k, bytes, &err);
        if (st == CP_OK)
            st = px_decode_frame(&o->img, bytes->data, bytes->len, &frame, &err);
        if (st != CP_OK) {
            fprintf(stderr, "bench_decode: %s frame %u: %s: %s\n", o->path, k,
                    cp_status_summary(st), err.detail);
            return st;
        }
        *checksum += frame.data[frame.size / 2];
        px_frame_clear(&frame);
    }
    return CP_OK;
}

static void usage(FILE *out)
{
    fputs("usage: bench_decode [--passes N] [--clock cpu|wall] FILE...\n"
          "  --passes N        decode every frame N times (default 5)\n"
          "  --clock cpu|wall  rates by process CPU time (default) or wall time\n",
          out);
}

int main(int argc, char **argv)
{
    syntax_stats slots[SYNTAX_SLOTS] = { 0 };
    size_t nslots = 0;
    opened *files = NULL;
    size_t nfiles = 0;
    long passes = 5;
    bool wall_clock = false;
    cp_buf bytes = CP_BUF_INIT;
    uint64_t checksum = 0;
    int rc = 1;
    int i;

    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--passes") == 0 && i + 1 < argc) {
            passes = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--clock") == 0 && i + 1 < argc) {
            wall_clock = strcmp(argv[++i], "wall") == 0;
        } else {
            usage(strcmp(argv[i], "--help") == 0 ? stdout : stderr);
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if (i == argc || passes < 1) {
        usage(stderr);
        return 2;
    }

    files = calloc((size_t)(argc - i), sizeof *files);
    if (files == NULL)
        return 1;
    for (; i < argc; i++) {
        opened *o = &files[nfiles];

        if (open_file(o, argv[i]) != CP_OK) {
            close_file(o);
            goto done;
        }
        nfiles++;
        o->stats = stats_for(slots, &nslots, syntax_name(o->img.transfer_syntax));
        if (o->stats == NULL)
            goto done;
    }

    for (size_t f = 0; f < nfiles; f++) {
        opened *o = &files[f];
        double wall = seconds_now(CLOCK_MONOTONIC);
        double cpu = seconds_now(CLOCK_PROCESS_CPUTIME_ID);

        for (long pass = 0; pass < passes; pass++) {
            if (decode_all(o, &bytes, &checksum) != CP_OK)
                goto done;
        }
        o->stats->cpu += seconds_now(CLOCK_PROCESS_CPUTIME_ID) - cpu;
        o->stats->wall += seconds_now(CLOCK_MONOTONIC) - wall;
        o->stats->frames += (uint64_t)o->img.frames * (uint64_t)passes;
        o->stats->pixels += (uint64_t)o->img.frames * o->img.rows * o->img.columns *
                            (uint64_t)passes;
    }

    for (size_t s = 0; s < nslots; s++) {
        double t = wall_clock ? slots[s].wall : slots[s].cpu;

        if (t <= 0)
            t = 1e-9;
        printf("figure decode.%s.cloudpacs %.1f frames/s\n", slots[s].name,
               (double)slots[s].frames / t);
        printf("figure decode.%s.cloudpacs_mpixels %.1f megapixels/s\n", slots[s].name,
               (double)slots[s].pixels / t / 1e6);
        printf("# decode.%s.cloudpacs: %" PRIu64 " frames in %.3f s cpu, %.3f s wall\n",
               slots[s].name, slots[s].frames, slots[s].cpu, slots[s].wall);
    }
    printf("# checksum %" PRIu64 "\n", checksum);
    rc = 0;

done:
    for (size_t f = 0; f < nfiles; f++)
        close_file(&files[f]);
    free(files);
    cp_buf_free(&bytes);
    return rc;
}

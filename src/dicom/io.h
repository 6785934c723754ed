/*
 * io.h - where DICOM bytes come from and where they go.
 *
 * The reader never touches a file descriptor or a socket directly: it pulls
 * bytes from a dcm_source, a small table of functions with a buffer in
 * front, so that the same parser reads a file, a memory block, a deflated
 * stream or a DIMSE message as it arrives over the network. Writers push to a
 * dcm_sink, a single write function.
 */
#ifndef DCM_IO_H
#define DCM_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/buf.h"
#include "core/status.h"

typedef struct dcm_source_ops {
    /* Reads up to len bytes into buf; *got < len only at the end of the input. */
    cp_status (*read)(void *ctx, void *buf, size_t len, size_t *got);
    /*
     * Reads up to len bytes at an absolute offset without moving the stream,
     * for values kept as references; NULL when the input cannot seek (a
     * socket, an inflated stream).
     */
    cp_status (*pread)(void *ctx, uint64_t offset, void *buf, size_t len, size_t *got);
    /* Releases ctx; may be NULL. */
    void (*close)(void *ctx);
} dcm_source_ops;

typedef struct dcm_source dcm_source;

/* A buffered source over ops and ctx; the source calls ops->close on destroy. NULL on OOM. */
dcm_source *dcm_source_create(const dcm_source_ops *ops, void *ctx);

/* A source reading the file at path; it owns the descriptor. */
cp_status dcm_source_open_file(const char *path, dcm_source **out, cp_error *err);

/*
 * Added for directory walks: like dcm_source_open_file, with a relative path
 * taken from the directory open as dirfd (openat(2); AT_FDCWD for the
 * working directory), so that reading the files of one directory resolves
 * the directory's own path once, not once per file.
 */
cp_status dcm_source_open_file_at(int dirfd, const char *path, dcm_source **out,
                                  cp_error *err);

/*
 * A source over len bytes at data, which are not copied and must outlive the
 * source. NULL on OOM.
 */
dcm_source *dcm_source_from_memory(const void *data, size_t len);

void dcm_source_destroy(dcm_source *src);

/* Reads up to len bytes; *got < len only at the end of the input. */
cp_status dcm_source_read(dcm_source *src, void *buf, size_t len, size_t *got);

/* Reads exactly len bytes, or fails with CP_ERR_TRUNCATED. */
cp_status dcm_source_read_exact(dcm_source *src, void *buf, size_t len);

/*
 * Looks at the next len bytes without consuming them (len at most 256).
 * *got < len only at the end of the input.
 */
cp_status dcm_source_peek(dcm_source *src, void *buf, size_t len, size_t *got);

/*
 * Added for the parser: like dcm_source_peek, but points at the bytes in the
 * source's own buffer instead of copying them. The pointer is valid until
 * the next call on src.
 */
cp_status dcm_source_peek_ptr(dcm_source *src, size_t len, const uint8_t **ptr, size_t *got);

/* Skips n bytes; CP_ERR_TRUNCATED if the input ends first. */
cp_status dcm_source_skip(dcm_source *src, uint64_t n);

/* Bytes consumed so far: the offset of the next byte read. */
uint64_t dcm_source_offset(const dcm_source *src);

/* Whether the source can read at an absolute offset (dcm_source_pread). */
bool dcm_source_can_pread(const dcm_source *src);

/* Reads at an absolute offset; CP_ERR_UNSUPPORTED when the source cannot seek. */
cp_status dcm_source_pread(dcm_source *src, uint64_t offset, void *buf, size_t len,
                           size_t *got);

/*
 * Added for the reader: the total size of the input in bytes, when it is
 * known (files and memory blocks); false for streams (sockets, inflated
 * data), whose end is found only by reading to it. The reader checks every
 * declared length against the bytes left when it can.
 */
bool dcm_source_size(const dcm_source *src, uint64_t *size);

/*
 * Added for the parser: the bytes left in the input from the current
 * position, or `want` when there are at least that many, so that a declared
 * length is checked before anything is allocated for it without asking a
 * file for its size (a system call) when the bytes are at hand: those
 * buffered answer at once, and a file reads a value of up to 8 KiB ahead,
 * as its reader is about to ask for it anyway. UINT64_MAX when the bytes
 * are not buffered and the size is not known (a stream).
 */
uint64_t dcm_source_left(dcm_source *src, uint64_t want);

/*
 * Added for the reader, which keeps the short values of a file where they
 * were read instead of copying each: consumes the next len bytes (at most
 * DCM_SOURCE_TAKE_MAX) and points at them in the source's own buffer, where
 * they stay until dcm_source_hand_over gives the buffer away or the source
 * is destroyed. Only a file's source does this: CP_ERR_UNSUPPORTED for the
 * others (a stream's buffers would be kept for a few bytes each, a memory
 * block is the caller's), and nothing is consumed then. CP_ERR_TRUNCATED
 * when the input ends first.
 */
#define DCM_SOURCE_TAKE_MAX (8u * 1024)
cp_status dcm_source_take(dcm_source *src, size_t len, const uint8_t **ptr);

/*
 * Added for the reader: hands every buffer holding bytes given out by
 * dcm_source_take to adopt(ctx, block), whose caller then owns the block,
 * frees it with cp_free, and may use its first DCM_SOURCE_BLOCK_RESERVED
 * bytes (the bytes taken lie after them). The source goes on from where it
 * was with a buffer of its own; if last, or if no memory is left for that
 * buffer, it gives its present one away and every later read fails
 * (CP_ERR_UNSUPPORTED): for a source about to be destroyed.
 */
#define DCM_SOURCE_BLOCK_RESERVED 32u
void dcm_source_hand_over(dcm_source *src, bool last, void (*adopt)(void *ctx, void *block),
                          void *ctx);

/*
 * Tells a source made by dcm_source_create the size of its whole input, so
 * that declared lengths are checked against it as for files.
 */
void dcm_source_set_size(dcm_source *src, uint64_t size);

/*
 * Added for the reader: a source that inflates what it reads from inner, for
 * Deflated Explicit VR Little Endian (PS3.5 A.5): raw deflate (RFC 1951),
 * or zlib (RFC 1950) when the data starts with a zlib header, as some
 * writers emit. inner is not owned and must outlive the new source, which
 * starts at offset 0, cannot pread, and fails with CP_ERR_LIMIT once more
 * than DCM_INFLATE_MAX bytes have come out of it.
 */
cp_status dcm_source_inflate(dcm_source *inner, dcm_source **out);

/*
 * A sink: everything a writer produces goes through write, which must take
 * all len bytes or fail.
 */
typedef struct dcm_sink {
    cp_status (*write)(void *ctx, const void *data, size_t len);
    void *ctx;
} dcm_sink;

/* A sink appending to buf. */
dcm_sink dcm_sink_to_buf(cp_buf *buf);

/* A sink writing to a stdio stream (CP_ERR_IO when fwrite fails). */
dcm_sink dcm_sink_to_file(FILE *stream);

static inline cp_status dcm_sink_write(const dcm_sink *sink, const void *data, size_t len)
{
    return len == 0 ? CP_OK : sink->write(sink->ctx, data, len);
}

#endif

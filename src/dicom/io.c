/*
 * io.c - byte sources and sinks for the DICOM reader and writer.
 *
 * A dcm_source puts a buffer (4 KiB at first, growing to 64 KiB as reads
 * ask for more) in front of a small table of functions, so that the parser
 * (parser.c) asks for a few bytes at a time without a system call each.
 * Three sources are built in: a file, read with pread at the source's own
 * offset so that skipping a value costs nothing; a memory block, which is
 * its own buffer and is never copied; and an inflating source for Deflated
 * Explicit VR Little Endian (PS3.5 A.5) that wraps another one. Sinks are a
 * single write function (PS3.10 files, DIMSE data).
 */
#include "dicom/io.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/alloc.h"
#include "core/limits.h"

#define SOURCE_BUFFER_SIZE (64u * 1024)
/*
 * The first read of a file asks for less than the whole buffer: a header
 * read up to the pixel data needs a few kilobytes (3 KiB for a CT slice),
 * and copying pixels it will never look at costs as much as parsing the
 * header. The buffer starts at this size too and grows only when reads ask
 * for more: a 64 KiB block allocated and freed for every file makes the C
 * library give the top of its heap back to the kernel and take it again
 * (brk, and fresh zeroed pages), which measured as 15% of reading a header.
 */
#define SOURCE_FIRST_READ  (4u * 1024)
/*
 * Each fill asks for this many times more than the last, up to the whole
 * buffer: a header that outgrows the first read (an MR's, with a vendor's
 * private block, 15 KiB) then takes one more read, not three.
 */
#define SOURCE_READ_GROWTH 4u
/*
 * A value this long or longer is read from a file straight into its place
 * (one copy from the page cache) instead of through the buffer (two).
 */
#define SOURCE_DIRECT_READ (8u * 1024)
#define SOURCE_PEEK_MAX    256u
#define INFLATE_INPUT_SIZE (16u * 1024)

/*
 * An owned buffer is the tail of a block that starts with this many bytes:
 * the blocks kept for the bytes dcm_source_take handed out are linked
 * through them, and their new owner may use them for its own list
 * (dcm_source_hand_over).
 */
#define BLOCK_RESERVED DCM_SOURCE_BLOCK_RESERVED

struct dcm_source {
    const dcm_source_ops *ops;
    void *ctx;
    uint8_t *buf;
    size_t pos;             /* next unread byte of buf */
    size_t end;             /* end of the buffered bytes */
    size_t cap;
    uint64_t raw;           /* input offset of the byte after buf[end - 1] */
    size_t read_size;       /* bytes the next fill asks for, growing to cap */
    uint64_t size;          /* total input size, when size_known */
    bool size_known;
    bool eof;               /* the input has no bytes past buf[end - 1] */
    bool owns_buf;
    bool positional;        /* fill with ops->pread at raw instead of ops->read */
    bool size_lazy;         /* a file not yet asked for its size and type (fstat) */
    size_t pinned;          /* buf[0, pinned) holds bytes handed out by dcm_source_take */
    uint8_t *kept;          /* earlier blocks with such bytes, linked (BLOCK_RESERVED) */
    cp_status failed;       /* sticky error of the underlying input */
};

/* The block an owned buffer is the tail of; NULL when there is none. */
static uint8_t *buf_block(const dcm_source *src)
{
    return src->buf == NULL ? NULL : src->buf - BLOCK_RESERVED;
}

static uint8_t *block_next(const uint8_t *block)
{
    uint8_t *next;

    memcpy(&next, block, sizeof next);
    return next;
}

static void block_set_next(uint8_t *block, uint8_t *next)
{
    memcpy(block, &next, sizeof next);
}

static dcm_source *source_alloc(const dcm_source_ops *ops, void *ctx, bool with_buffer)
{
    dcm_source *src = cp_calloc(1, sizeof *src);

    if (src == NULL)
        return NULL;
    if (with_buffer) {
        uint8_t *block = cp_malloc(BLOCK_RESERVED + SOURCE_FIRST_READ);

        if (block == NULL) {
            cp_free(src);
            return NULL;
        }
        src->buf = block + BLOCK_RESERVED;
        src->cap = SOURCE_FIRST_READ;
        src->read_size = SOURCE_FIRST_READ;
        src->owns_buf = true;
    }
    src->ops = ops;
    src->ctx = ctx;
    return src;
}

dcm_source *dcm_source_create(const dcm_source_ops *ops, void *ctx)
{
    return source_alloc(ops, ctx, true);
}

void dcm_source_destroy(dcm_source *src)
{
    if (src == NULL)
        return;
    if (src->ops != NULL && src->ops->close != NULL)
        src->ops->close(src->ctx);
    if (src->owns_buf)
        cp_free(buf_block(src));
    while (src->kept != NULL) {
        uint8_t *next = block_next(src->kept);

        cp_free(src->kept);
        src->kept = next;
    }
    cp_free(src);
}

static void file_learn_size(dcm_source *src);

/* One call to the underlying input at the raw position; marks the end. */
static cp_status source_raw_read(dcm_source *src, void *buf, size_t len, size_t *got)
{
    cp_status st;

    *got = 0;
    if (src->eof || len == 0)
        return CP_OK;
    if (src->failed != CP_OK)
        return src->failed;

    /* A known size saves the read that would only find the end. */
    if (src->size_known) {
        if (src->raw >= src->size) {
            src->eof = true;
            return CP_OK;
        }
        if (len > src->size - src->raw)
            len = (size_t)(src->size - src->raw);
    }

    if (src->positional) {
        st = src->ops->pread(src->ctx, src->raw, buf, len, got);
        /* A file opened without fstat may be a pipe: then it is read as a stream. */
        if (st == CP_ERR_UNSUPPORTED && src->size_lazy && src->raw == 0) {
            src->size_lazy = src->positional = false;
            st = src->ops->read(src->ctx, buf, len, got);
        }
    } else {
        st = src->ops->read(src->ctx, buf, len, got);
    }
    if (st != CP_OK) {
        src->failed = st;
        return st;
    }
    src->raw += *got;
    if (*got < len || (src->size_known && src->raw >= src->size))
        src->eof = true;

    /* A short read of a regular file found its end, and so its size. */
    if (src->size_lazy && *got < len) {
        src->size_lazy = false;
        src->size = src->raw;
        src->size_known = true;
    }
    return CP_OK;
}

/*
 * Grows the buffer to hold at least `need` bytes, or to SOURCE_BUFFER_SIZE
 * if that is less. A memory source's buffer is the caller's and never grows.
 */
static cp_status source_reserve(dcm_source *src, size_t need)
{
    size_t cap = src->cap == 0 ? SOURCE_FIRST_READ : src->cap;
    uint8_t *grown;

    if (need > SOURCE_BUFFER_SIZE)
        need = SOURCE_BUFFER_SIZE;
    if (src->cap >= need || !src->owns_buf)
        return CP_OK;
    while (cap < need)
        cap *= 2;
    grown = cp_realloc(buf_block(src), BLOCK_RESERVED + cap);
    if (grown == NULL)
        return CP_ERR_NOMEM;
    src->buf = grown + BLOCK_RESERVED;
    src->cap = cap;
    return CP_OK;
}

/*
 * Before bytes handed out by dcm_source_take could be moved or overwritten,
 * their block is kept as it is and the unread bytes go to a new one.
 */
static cp_status source_unpin(dcm_source *src)
{
    size_t left = src->end - src->pos;
    uint8_t *block;

    if (src->pinned == 0)
        return CP_OK;
    block = cp_malloc(BLOCK_RESERVED + src->cap);
    if (block == NULL)
        return CP_ERR_NOMEM;
    if (left > 0)
        memcpy(block + BLOCK_RESERVED, src->buf + src->pos, left);
    /* Bytes are pinned only in a buffer that exists. */
    block_set_next(src->buf - BLOCK_RESERVED, src->kept);
    src->kept = src->buf - BLOCK_RESERVED;
    src->buf = block + BLOCK_RESERVED;
    src->pos = 0;
    src->end = left;
    src->pinned = 0;
    return CP_OK;
}

/*
 * Makes at least want bytes (want <= SOURCE_BUFFER_SIZE) readable at
 * buf[pos], unless the input ends.
 */
static cp_status source_fill(dcm_source *src, size_t want)
{
    size_t got;
    cp_status st;

    if (src->end - src->pos >= want || src->eof)
        return CP_OK;

    if (src->pinned > 0) {
        st = source_unpin(src);
        if (st != CP_OK)
            return st;
    }
    if (src->pos > 0) {
        memmove(src->buf, src->buf + src->pos, src->end - src->pos);
        src->end -= src->pos;
        src->pos = 0;
    }
    while (src->end < want && !src->eof) {
        size_t ask = src->read_size;

        if (ask < want - src->end)
            ask = want - src->end;
        st = source_reserve(src, src->end + ask);
        if (st != CP_OK)
            return st;
        if (ask > src->cap - src->end)
            ask = src->cap - src->end;
        if (src->read_size < SOURCE_BUFFER_SIZE)
            src->read_size *= SOURCE_READ_GROWTH;
        st = source_raw_read(src, src->buf + src->end, ask, &got);
        if (st != CP_OK)
            return st;
        src->end += got;
    }
    return CP_OK;
}

cp_status dcm_source_read(dcm_source *src, void *buf, size_t len, size_t *got)
{
    uint8_t *out = buf;
    size_t have = src->end - src->pos;
    size_t done = 0, n;
    cp_status st;

    *got = 0;
    if (have >= len) {
        if (len > 0)
            memcpy(out, src->buf + src->pos, len);
        src->pos += len;
        *got = len;
        return CP_OK;
    }

    if (have > 0) {
        memcpy(out, src->buf + src->pos, have);
        done = have;
    }
    src->pos = src->end = 0;

    /* Large reads bypass the buffer: a value is copied once, into its place. */
    while (done < len && !src->eof) {
        size_t direct = src->positional ? SOURCE_DIRECT_READ : SOURCE_BUFFER_SIZE / 2;

        if (len - done >= direct) {
            st = source_raw_read(src, out + done, len - done, &n);
            if (st != CP_OK)
                goto fail;
            done += n;
            continue;
        }
        st = source_fill(src, len - done);
        if (st != CP_OK)
            goto fail;
        n = src->end - src->pos < len - done ? src->end - src->pos : len - done;
        memcpy(out + done, src->buf + src->pos, n);
        src->pos += n;
        done += n;
    }
    *got = done;
    return CP_OK;

fail:
    *got = done;
    return st;
}

cp_status dcm_source_read_exact(dcm_source *src, void *buf, size_t len)
{
    size_t got;
    cp_status st = dcm_source_read(src, buf, len, &got);

    if (st != CP_OK)
        return st;
    return got == len ? CP_OK : CP_ERR_TRUNCATED;
}

cp_status dcm_source_peek(dcm_source *src, void *buf, size_t len, size_t *got)
{
    size_t have;
    cp_status st;

    *got = 0;
    if (src->end - src->pos >= len) {
        memcpy(buf, src->buf + src->pos, len);
        *got = len;
        return CP_OK;
    }
    if (len > SOURCE_PEEK_MAX)
        return CP_ERR_INVALID;
    st = source_fill(src, len);
    if (st != CP_OK)
        return st;
    have = src->end - src->pos;
    *got = have < len ? have : len;
    if (*got > 0)
        memcpy(buf, src->buf + src->pos, *got);
    return CP_OK;
}

cp_status dcm_source_peek_ptr(dcm_source *src, size_t len, const uint8_t **ptr, size_t *got)
{
    size_t have = src->end - src->pos;
    cp_status st;

    if (have < len) {
        if (len > SOURCE_PEEK_MAX)
            return CP_ERR_INVALID;
        st = source_fill(src, len);
        if (st != CP_OK)
            return st;
        have = src->end - src->pos;
    }
    *ptr = src->buf + src->pos;
    *got = have < len ? have : len;
    return CP_OK;
}

cp_status dcm_source_skip(dcm_source *src, uint64_t n)
{
    size_t have = src->end - src->pos;
    size_t got;
    cp_status st;

    if (n <= have) {
        src->pos += (size_t)n;
        return CP_OK;
    }
    n -= have;
    src->pos = src->end = 0;

    if (src->size_lazy)
        file_learn_size(src);
    if (src->positional) {
        /* Nothing to read: the next fill starts further on. */
        if (src->size_known && n > src->size - src->raw) {
            src->raw = src->size;
            src->eof = true;
            return CP_ERR_TRUNCATED;
        }
        src->raw += n;
        return CP_OK;
    }

    /*
     * A stream is skipped by reading it, in pieces as large as the buffer
     * can grow to; if it cannot grow, its present size will do.
     */
    st = source_unpin(src);
    if (st != CP_OK)
        return st;
    st = source_reserve(src, n < SOURCE_BUFFER_SIZE ? (size_t)n : SOURCE_BUFFER_SIZE);
    if (st != CP_OK && src->cap == 0)
        return st;
    while (n > 0) {
        size_t want = n < src->cap ? (size_t)n : src->cap;

        if (src->eof)
            return CP_ERR_TRUNCATED;
        st = source_raw_read(src, src->buf, want, &got);
        if (st != CP_OK)
            return st;
        n -= got;
    }
    return CP_OK;
}

uint64_t dcm_source_offset(const dcm_source *src)
{
    return src->raw - (src->end - src->pos);
}

bool dcm_source_can_pread(const dcm_source *src)
{
    return src->ops != NULL && src->ops->pread != NULL;
}

bool dcm_source_size(const dcm_source *src, uint64_t *size)
{
    /*
     * A file learns its size on the first question: the answer does not
     * change what the caller sees of src, so the cast is only a cache fill.
     */
    if (src->size_lazy)
        file_learn_size((dcm_source *)(uintptr_t)src);
    if (src->size_known)
        *size = src->size;
    return src->size_known;
}

cp_status dcm_source_take(dcm_source *src, size_t len, const uint8_t **ptr)
{
    cp_status st;

    *ptr = NULL;
    if (!src->owns_buf || !src->positional || len > DCM_SOURCE_TAKE_MAX)
        return CP_ERR_UNSUPPORTED;
    if (src->end - src->pos < len) {
        st = source_fill(src, len);
        if (st != CP_OK)
            return st;
        if (src->end - src->pos < len)
            return CP_ERR_TRUNCATED;
    }
    *ptr = src->buf + src->pos;
    src->pos += len;
    src->pinned = src->pos;
    return CP_OK;
}

void dcm_source_hand_over(dcm_source *src, bool last, void (*adopt)(void *ctx, void *block),
                          void *ctx)
{
    uint8_t *block;

    if (src->pinned > 0 && (last || source_unpin(src) != CP_OK)) {
        /* The buffer goes as it is; what was not read yet goes with it. */
        block = src->buf - BLOCK_RESERVED;
        src->buf = NULL;
        src->cap = src->pos = src->end = src->pinned = 0;
        src->failed = CP_ERR_UNSUPPORTED;
        block_set_next(block, src->kept);
        src->kept = block;
    }
    while (src->kept != NULL) {
        block = src->kept;
        src->kept = block_next(block);
        adopt(ctx, block);
    }
}

uint64_t dcm_source_left(dcm_source *src, uint64_t want)
{
    size_t have = src->end - src->pos;
    uint64_t size;

    if (have >= want)
        return want;
    if (src->size_lazy && want <= SOURCE_DIRECT_READ &&
        source_fill(src, (size_t)want) == CP_OK) {
        have = src->end - src->pos;
        if (have >= want)
            return want;
        if (src->eof)
            return have;
    }
    if (!dcm_source_size(src, &size))
        return UINT64_MAX;
    return size - dcm_source_offset(src);
}

void dcm_source_set_size(dcm_source *src, uint64_t size)
{
    src->size_lazy = false;
    src->size = size;
    src->size_known = true;
}

cp_status dcm_source_pread(dcm_source *src, uint64_t offset, void *buf, size_t len,
                           size_t *got)
{
    uint8_t *out = buf;
    size_t done = 0, n;
    cp_status st;

    *got = 0;
    if (!dcm_source_can_pread(src))
        return CP_ERR_UNSUPPORTED;

    while (done < len) {
        st = src->ops->pread(src->ctx, offset + done, out + done, len - done, &n);
        if (st != CP_OK)
            return st;
        if (n == 0)
            break;
        done += n;
    }
    *got = done;
    return CP_OK;
}

/* --- files ------------------------------------------------------------------ */

typedef struct {
    int fd;
} file_ctx;

static cp_status file_read(void *ctx, void *buf, size_t len, size_t *got)
{
    file_ctx *f = ctx;
    size_t done = 0;

    while (done < len) {
        ssize_t n = read(f->fd, (uint8_t *)buf + done, len - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return CP_ERR_IO;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    *got = done;
    return CP_OK;
}

static cp_status file_pread(void *ctx, uint64_t offset, void *buf, size_t len, size_t *got)
{
    file_ctx *f = ctx;
    size_t done = 0;

    while (done < len) {
        ssize_t n = pread(f->fd, (uint8_t *)buf + done, len - done,
                          (off_t)(offset + done));

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == ESPIPE ? CP_ERR_UNSUPPORTED : CP_ERR_IO;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    *got = done;
    return CP_OK;
}

static void file_close(void *ctx)
{
    file_ctx *f = ctx;

    close(f->fd);
    cp_free(f);
}

static const dcm_source_ops file_ops = { file_read, file_pread, file_close };

/*
 * Asks a file opened without fstat for its type and size. A regular file
 * keeps being read at offsets; anything else (a pipe, a device) is a stream
 * of unknown size.
 */
static void file_learn_size(dcm_source *src)
{
    file_ctx *f = src->ctx;
    struct stat st;

    src->size_lazy = false;
    if (src->ops != &file_ops || fstat(f->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        src->positional = false;
        return;
    }
    src->size = (uint64_t)st.st_size;
    src->size_known = true;
}

cp_status dcm_source_open_file(const char *path, dcm_source **out, cp_error *err)
{
    return dcm_source_open_file_at(AT_FDCWD, path, out, err);
}

cp_status dcm_source_open_file_at(int dirfd, const char *path, dcm_source **out,
                                  cp_error *err)
{
    file_ctx *f = NULL;
    dcm_source *src;
    int fd;

    *out = NULL;
    fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cp_error_set(err, errno == ENOENT ? CP_ERR_NOT_FOUND : CP_ERR_IO,
                            CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, "open() failed: %s",
                            strerror(errno));

    f = cp_malloc(sizeof *f);
    if (f == NULL)
        goto nomem;
    f->fd = fd;
    src = source_alloc(&file_ops, f, true);
    if (src == NULL)
        goto nomem;

    /*
     * A regular file can be read at any offset, so skips need not read. The
     * file is taken to be one, and its type and size are asked for (fstat)
     * only when someone needs them: the header of a CT slice, whose values
     * all lie within the first read, saves one of its four system calls.
     */
    src->positional = true;
    src->size_lazy = true;
    *out = src;
    return CP_OK;

nomem:
    cp_free(f);
    close(fd);
    return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, NULL);
}

/* --- memory ----------------------------------------------------------------- */

typedef struct {
    const uint8_t *data;
    size_t len;
} memory_ctx;

static cp_status memory_pread(void *ctx, uint64_t offset, void *buf, size_t len, size_t *got)
{
    memory_ctx *m = ctx;

    *got = 0;
    if (offset >= m->len)
        return CP_OK;
    *got = m->len - (size_t)offset < len ? m->len - (size_t)offset : len;
    memcpy(buf, m->data + offset, *got);
    return CP_OK;
}

static void memory_close(void *ctx)
{
    cp_free(ctx);
}

/* Never called: a memory source is all buffer and starts at its end of input. */
static cp_status memory_read(void *ctx, void *buf, size_t len, size_t *got)
{
    (void)ctx;
    (void)buf;
    (void)len;
    *got = 0;
    return CP_OK;
}

static const dcm_source_ops memory_ops = { memory_read, memory_pread, memory_close };

dcm_source *dcm_source_from_memory(const void *data, size_t len)
{
    memory_ctx *m = cp_malloc(sizeof *m);
    dcm_source *src;

    if (m == NULL)
        return NULL;
    m->data = data;
    m->len = len;
    src = source_alloc(&memory_ops, m, false);
    if (src == NULL) {
        cp_free(m);
        return NULL;
    }

    /* The block is the buffer: reads copy straight out of it. */
    src->buf = (uint8_t *)(uintptr_t)data;
    src->cap = len;
    src->end = len;
    src->raw = len;
    src->eof = true;
    src->size = len;
    src->size_known = true;
    return src;
}

/* --- inflate (PS3.5 A.5) ------------------------------------------------------ */

typedef struct {
    dcm_source *inner;
    z_stream zs;
    bool started;
    bool finished;
    bool inner_eof;
    uint64_t total;
    uint8_t in[INFLATE_INPUT_SIZE];
} inflate_ctx;

static voidpf inflate_zalloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    if (size != 0 && items > SIZE_MAX / size)
        return Z_NULL;
    return cp_malloc((size_t)items * size);
}

static void inflate_zfree(voidpf opaque, voidpf ptr)
{
    (void)opaque;
    cp_free(ptr);
}

static cp_status inflate_refill(inflate_ctx *z)
{
    size_t got;
    cp_status st;

    st = dcm_source_read(z->inner, z->in, sizeof z->in, &got);
    if (st != CP_OK)
        return st;
    if (got < sizeof z->in)
        z->inner_eof = true;
    z->zs.next_in = z->in;
    z->zs.avail_in = (uInt)got;
    return CP_OK;
}

/* Starts zlib once the first bytes tell raw deflate from a zlib stream. */
static cp_status inflate_start(inflate_ctx *z)
{
    int bits = -15;
    cp_status st;

    st = inflate_refill(z);
    if (st != CP_OK)
        return st;
    if (z->zs.avail_in >= 2 && z->in[0] == 0x78 && ((z->in[0] << 8) | z->in[1]) % 31 == 0)
        bits = 15;
    z->zs.zalloc = inflate_zalloc;
    z->zs.zfree = inflate_zfree;
    if (inflateInit2(&z->zs, bits) != Z_OK)
        return CP_ERR_NOMEM;
    z->started = true;
    return CP_OK;
}

static cp_status inflate_read(void *ctx, void *buf, size_t len, size_t *got)
{
    inflate_ctx *z = ctx;
    cp_status st;
    int rc;

    *got = 0;
    if (!z->started) {
        st = inflate_start(z);
        if (st != CP_OK)
            return st;
    }

    z->zs.next_out = buf;
    z->zs.avail_out = len > UINT32_MAX ? UINT32_MAX : (uInt)len;
    while (z->zs.avail_out > 0 && !z->finished) {
        if (z->zs.avail_in == 0) {
            if (z->inner_eof)
                break;
            st = inflate_refill(z);
            if (st != CP_OK)
                return st;
            if (z->zs.avail_in == 0)
                break;
        }
        rc = inflate(&z->zs, Z_NO_FLUSH);
        if (rc == Z_STREAM_END)
            z->finished = true;
        else if (rc == Z_MEM_ERROR)
            return CP_ERR_NOMEM;
        else if (rc != Z_OK && rc != Z_BUF_ERROR)
            return CP_ERR_MALFORMED;
    }

    *got = (size_t)((uint8_t *)z->zs.next_out - (uint8_t *)buf);
    z->total += *got;
    if (z->total > DCM_INFLATE_MAX)
        return CP_ERR_LIMIT;
    return CP_OK;
}

static void inflate_close(void *ctx)
{
    inflate_ctx *z = ctx;

    if (z->started)
        inflateEnd(&z->zs);
    cp_free(z);
}

static const dcm_source_ops inflate_ops = { inflate_read, NULL, inflate_close };

cp_status dcm_source_inflate(dcm_source *inner, dcm_source **out)
{
    inflate_ctx *z = cp_calloc(1, sizeof *z);

    *out = NULL;
    if (z == NULL)
        return CP_ERR_NOMEM;
    z->inner = inner;
    *out = dcm_source_create(&inflate_ops, z);
    if (*out == NULL) {
        cp_free(z);
        return CP_ERR_NOMEM;
    }
    return CP_OK;
}

/* --- sinks ------------------------------------------------------------------ */

static cp_status sink_buf_write(void *ctx, const void *data, size_t len)
{
    return cp_buf_append(ctx, data, len);
}

dcm_sink dcm_sink_to_buf(cp_buf *buf)
{
    dcm_sink sink = { sink_buf_write, buf };

    return sink;
}

static cp_status sink_file_write(void *ctx, const void *data, size_t len)
{
    return fwrite(data, 1, len, ctx) == len ? CP_OK : CP_ERR_IO;
}

dcm_sink dcm_sink_to_file(FILE *stream)
{
    dcm_sink sink = { sink_file_write, stream };

    return sink;
}

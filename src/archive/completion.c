/*
 * completion.c - study completion by quiet time (completion.h): the
 * quiet studies are gathered first, since an index callback must not call
 * back into the index, then each is marked and announced.
 */
#include "archive/completion.h"

#include <string.h>

#include "core/alloc.h"
#include "core/limits.h"

typedef struct gathered {
    completion_study *list;
    size_t count;
} gathered;

static cp_status gather(void *ctx, const index_row *row)
{
    gathered *g = ctx;
    completion_study *c;

    if (g->count >= COMPLETION_BATCH_MAX)
        return CP_ERR_STOPPED;
    c = &g->list[g->count++];
    memcpy(c->study_uid, row->rec.study.uid, sizeof c->study_uid);
    c->instances = row->study_instances;
    c->institution_id = row->institution_id;
    c->last_arrival_us = row->study_last_arrival_us;
    return CP_OK;
}

cp_status completion_pass(index_db *idx, int64_t now_us, int64_t quiet_us, completion_fn fn,
                          void *ctx, size_t *announced, cp_error *err)
{
    gathered g = { NULL, 0 };
    cp_status st;

    *announced = 0;
    g.list = cp_calloc(COMPLETION_BATCH_MAX, sizeof *g.list);
    if (g.list == NULL)
        return CP_ERR_NOMEM;
    st = index_studies_quiet_since(idx, now_us - quiet_us, COMPLETION_BATCH_MAX, gather, &g,
                                   err);
    if (st != CP_OK)
        goto done;

    for (size_t i = 0; i < g.count; i++) {
        cp_error one;

        cp_error_clear(&one);
        st = index_mark_study_complete(idx, g.list[i].study_uid, g.list[i].last_arrival_us,
                                       &one);
        if (st == CP_ERR_AGAIN || st == CP_ERR_NOT_FOUND) {
            st = CP_OK;
            continue;
        }
        if (st != CP_OK) {
            if (err != NULL)
                *err = one;
            goto done;
        }
        (*announced)++;
        if (fn != NULL)
            fn(ctx, &g.list[i]);
    }

done:
    cp_free(g.list);
    return st;
}

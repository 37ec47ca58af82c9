/* SPDX-License-Identifier: MIT */
/* registry: the server's open spaces. A space created by `profilectl space create` while the
 * server runs is opened by the first request that names it; spaces stay open until shutdown
 * (LMDB allows one environment handle per process, so every thread shares it). */
#include "http_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ps/log.h"

struct registry {
    char *data_dir;
    pthread_rwlock_t lock;
    ps_space **spaces;
    size_t count;
};

registry *registry_new(const char *data_dir)
{
    registry *r = ps_xcalloc(1, sizeof *r);
    r->data_dir = ps_xstrdup(data_dir);
    pthread_rwlock_init(&r->lock, NULL);
    return r;
}

void registry_free(registry *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->count; i++)
        ps_space_close(r->spaces[i]);
    free(r->spaces);
    pthread_rwlock_destroy(&r->lock);
    free(r->data_dir);
    free(r);
}

static ps_space *find(registry *r, const char *name)
{
    for (size_t i = 0; i < r->count; i++)
        if (strcmp(ps_space_name(r->spaces[i]), name) == 0)
            return r->spaces[i];
    return NULL;
}

ps_space *registry_get(registry *r, const char *name)
{
    pthread_rwlock_rdlock(&r->lock);
    ps_space *sp = find(r, name);
    pthread_rwlock_unlock(&r->lock);
    if (sp)
        return sp;
    pthread_rwlock_wrlock(&r->lock);
    if ((sp = find(r, name)) == NULL) {
        ps_status st = ps_space_open(r->data_dir, name, false, &sp);
        if (st == PS_OK) {
            r->spaces = ps_xrealloc(r->spaces, (r->count + 1) * sizeof *r->spaces);
            r->spaces[r->count++] = sp;
            ps_log(PS_LOG_INFO, "msg=\"space opened\" space=%s", name);
        } else {
            sp = NULL;
            if (st != PS_ENOTFOUND)
                ps_log(PS_LOG_ERROR, "msg=\"cannot open space\" space=%s error=%s", name,
                       ps_status_str(st));
        }
    }
    pthread_rwlock_unlock(&r->lock);
    return sp;
}

void registry_each(registry *r, registry_fn fn, void *ud)
{
    char **names = NULL;
    size_t count = 0;
    if (ps_space_list(r->data_dir, &names, &count) == PS_OK)
        for (size_t i = 0; i < count; i++)
            (void)registry_get(r, names[i]);
    ps_space_list_free(names, count);
    pthread_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < r->count; i++)
        fn(ud, r->spaces[i]);
    pthread_rwlock_unlock(&r->lock);
}

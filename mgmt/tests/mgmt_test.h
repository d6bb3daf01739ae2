/* Shared helpers for the mgmt unit tests, the fuzz targets and the bench. */
#ifndef OVHA_MGMT_TEST_H
#define OVHA_MGMT_TEST_H

#include <stddef.h>

#include "base/base.h"
#include "mgmt/mgmt.h"

#define MGMT_TEST_NTYPES 32

/* Records events as canonical text lines plus a count per type. */
struct mgmt_test_rec {
    struct ovha_buf dump;
    size_t count[MGMT_TEST_NTYPES];
    size_t nevents;
    bool keep_status; /* also run mgmt_status_parse on every block */
};

void mgmt_test_rec_init(struct mgmt_test_rec *r);
void mgmt_test_rec_free(struct mgmt_test_rec *r);
/* A mgmt_parser_event_cb; data is a struct mgmt_test_rec. */
void mgmt_test_rec_cb(const struct mgmt_event *ev, void *data);
/* Appends one canonical line describing ev. */
void mgmt_test_dump(const struct mgmt_event *ev, struct ovha_buf *out);
/* Parses data in chunks of chunk bytes (0: whole) into r. 0 or -ENOMEM. */
int mgmt_test_parse(const char *data,
                    size_t n,
                    size_t chunk,
                    const struct mgmt_limits *lim,
                    struct mgmt_test_rec *r);
/* Reads a whole file. Caller frees *ret with ovha_free. */
int mgmt_test_load(const char *path, char **ret, size_t *ret_len);
/* True for a daemon transcript fixture: *.txt but not *.commands.txt. */
bool mgmt_test_is_transcript(const char *name);

#endif

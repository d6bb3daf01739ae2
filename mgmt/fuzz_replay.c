/* Fuzz smoke run for builds without libFuzzer: feeds seeded random
 * mutations of every fixture through LLVMFuzzerTestOneInput.
 *
 * usage: mgmt_fuzz_replay FIXTURES_DIR [COUNT [SEED]]
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt/tests/mgmt_test.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_REPLAY_MAX_SEEDS 64
#define FUZZ_REPLAY_MAX_INPUT 8192

static uint64_t mgmt_fuzz_replay_rng = 0x2545f4914f6cdd1dull;

static uint64_t mgmt_fuzz_replay_next(void)
{
    uint64_t x = mgmt_fuzz_replay_rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    mgmt_fuzz_replay_rng = x;
    return x;
}

/* Tokens that steer mutations towards the interesting paths. */
static const char *const mgmt_fuzz_replay_dict[] = {
    ">CLIENT:CONNECT,",
    ">CLIENT:ENV,",
    ">CLIENT:ENV,END\r\n",
    "END\r\n",
    "SUCCESS: ",
    "ERROR: ",
    ">CLIENT:ADDRESS,",
    ">BYTECOUNT_CLI:",
    ">UPDOWN:ENV,",
    "\r\n",
    "\n",
    ",",
    "=",
    "\t",
    "CLIENT_LIST\t",
    "ROUTING_TABLE\t",
    "18446744073709551616",
    ">CLIENT:CR_RESPONSE,",
};

/* One random edit of buf (len <= FUZZ_REPLAY_MAX_INPUT). */
static size_t mgmt_fuzz_replay_mutate(uint8_t *buf, size_t len)
{
    uint64_t r = mgmt_fuzz_replay_next();
    size_t pos = len > 0 ? (size_t)(mgmt_fuzz_replay_next() % len) : 0;
    switch (r % 6) {
    case 0: /* flip a byte */
        if (len > 0) {
            buf[pos] = (uint8_t)mgmt_fuzz_replay_next();
        }
        return len;
    case 1: { /* delete a run */
        size_t k = (size_t)(mgmt_fuzz_replay_next() % 64);
        if (pos + k > len) {
            k = len - pos;
        }
        memmove(buf + pos, buf + pos + k, len - pos - k);
        return len - k;
    }
    case 2: { /* insert a dictionary token */
        const char *t =
            mgmt_fuzz_replay_dict[mgmt_fuzz_replay_next() %
                                  (sizeof(mgmt_fuzz_replay_dict) /
                                   sizeof(mgmt_fuzz_replay_dict[0]))];
        size_t k = strlen(t);
        if (len + k > FUZZ_REPLAY_MAX_INPUT) {
            return len;
        }
        memmove(buf + pos + k, buf + pos, len - pos);
        memcpy(buf + pos, t, k);
        return len + k;
    }
    case 3: { /* duplicate a run (long lines, big blocks) */
        size_t k = (size_t)(mgmt_fuzz_replay_next() % 512);
        if (pos + k > len) {
            k = len - pos;
        }
        if (len + k > FUZZ_REPLAY_MAX_INPUT) {
            return len;
        }
        memmove(buf + pos + k, buf + pos, len - pos);
        return len + k;
    }
    case 4: /* truncate */
        return pos;
    default: /* drop a line break */
        for (size_t i = pos; i < len; i++) {
            if (buf[i] == '\n') {
                buf[i] = 'x';
                break;
            }
        }
        return len;
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FIXTURES_DIR [COUNT [SEED]]\n", argv[0]);
        return 2;
    }
    long count = argc > 2 ? atol(argv[2]) : 200000;
    if (argc > 3) {
        mgmt_fuzz_replay_rng = strtoull(argv[3], NULL, 0) | 1;
    }
    char *seeds[FUZZ_REPLAY_MAX_SEEDS];
    size_t lens[FUZZ_REPLAY_MAX_SEEDS];
    size_t nseeds = 0;
    DIR *d = opendir(argv[1]);
    if (d == NULL) {
        perror(argv[1]);
        return 1;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL && nseeds < FUZZ_REPLAY_MAX_SEEDS) {
        if (!mgmt_test_is_transcript(de->d_name)) {
            continue;
        }
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", argv[1], de->d_name);
        if (mgmt_test_load(path, &seeds[nseeds], &lens[nseeds]) == 0) {
            nseeds++;
        }
    }
    closedir(d);
    if (nseeds == 0) {
        fprintf(stderr, "no fixtures in %s\n", argv[1]);
        return 1;
    }
    static uint8_t buf[FUZZ_REPLAY_MAX_INPUT];
    for (long i = 0; i < count; i++) {
        size_t s = (size_t)(mgmt_fuzz_replay_next() % nseeds);
        /* A random window of the seed keeps inputs short and fast. */
        size_t off =
            lens[s] > 0 ? (size_t)(mgmt_fuzz_replay_next() % lens[s]) : 0;
        size_t len = lens[s] - off;
        if (len > 2048) {
            len = 2048;
        }
        buf[0] = (uint8_t)mgmt_fuzz_replay_next();
        memcpy(buf + 1, seeds[s] + off, len);
        len++;
        int edits = 1 + (int)(mgmt_fuzz_replay_next() % 8);
        for (int e = 0; e < edits; e++) {
            len = mgmt_fuzz_replay_mutate(buf, len);
        }
        LLVMFuzzerTestOneInput(buf, len);
    }
    for (size_t i = 0; i < nseeds; i++) {
        ovha_free(seeds[i]);
    }
    printf("mgmt_fuzz_replay: %ld inputs over %zu fixtures, 0 failures\n",
           count, nseeds);
    return 0;
}

/* enforce test groups, run by test_main.c. */
#ifndef OVHA_ENFORCE_TESTS_H
#define OVHA_ENFORCE_TESTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "enforce/route.h"

/* A route entry via a next hop / out of a device (test_main.c). */
struct enf_route_entry enf_t_via(const char *dst,
                                 unsigned prefix,
                                 const char *via,
                                 uint32_t metric);
struct enf_route_entry enf_t_dev(const char *dst,
                                 unsigned prefix,
                                 const char *dev,
                                 uint32_t metric);

extern const struct CMUnitTest enf_route_tests[];
extern const size_t enf_route_ntests;
extern const struct CMUnitTest enf_route_linux_tests[];
extern const size_t enf_route_linux_ntests;
extern const struct CMUnitTest enf_fdb_tests[];
extern const size_t enf_fdb_ntests;
extern const struct CMUnitTest enf_fdb_linux_tests[];
extern const size_t enf_fdb_linux_ntests;
extern const struct CMUnitTest enf_fw_tests[];
extern const size_t enf_fw_ntests;
extern const struct CMUnitTest enf_fw_linux_tests[];
extern const size_t enf_fw_linux_ntests;
extern const struct CMUnitTest enf_shape_tests[];
extern const size_t enf_shape_ntests;
extern const struct CMUnitTest enf_shape_linux_tests[];
extern const size_t enf_shape_linux_ntests;

#endif

/* enforce test groups, run by test_main.c. */
#ifndef OVHA_ENFORCE_TESTS_H
#define OVHA_ENFORCE_TESTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

extern const struct CMUnitTest enf_route_tests[];
extern const size_t enf_route_ntests;
extern const struct CMUnitTest enf_route_linux_tests[];
extern const size_t enf_route_linux_ntests;

#endif

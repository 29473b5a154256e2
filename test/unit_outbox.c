/* Licensed under the Apache License, Version 2.0. */
/* outbox tests: written with the outbox (et_outbox_dbd.c) */
#include "unit_tests.h"

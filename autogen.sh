#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Regenerates the autotools files from configure.ac and Makefile.am.
set -eu
cd "$(dirname "$0")"
autoreconf --install --force

#!/usr/bin/env node
// Stable entry point that exists before the build, so npm can link the `sluice` bin at install time.
import '../dist/bin.js';

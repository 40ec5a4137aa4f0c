// Package bench holds Open-Local's benchmarks, one file per area. Figures
// and the commands that reproduce them are in README.md.
package bench

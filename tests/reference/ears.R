# Reference values for tests/unit/test_monitors.py::test_ears_matches_surveillance_earsC.
# Run: Rscript tests/reference/ears.R   (Debian: apt-get install r-cran-surveillance; surveillance 1.20.3)
suppressMessages(library(surveillance))
counts <- c(3, 5, 4, 6, 2, 5, 4, 3, 6, 5, 4, 12, 5, 4, 3, 15, 14, 4, 5, 6, 5, 4, 20, 3)
for (m in c("C1", "C2", "C3")) {
  res <- earsC(sts(observed = counts), control = list(method = m))
  cat(m, ":", sprintf("%.10f", upperbound(res)), "\n")
  cat(m, "alarm:", as.integer(alarms(res)), "\n")
}

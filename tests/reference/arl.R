# Reference ARLs for tests/unit/test_control_limits.py (values pasted there, with this script's output).
# Run: Rscript tests/reference/arl.R   (Debian: apt-get install r-cran-spc; spc 0.6.7)
suppressMessages(library(spc))
# One-sided normal CUSUM S_t = max(0, S_{t-1} + X_t - k), signal when S_t > h, X ~ N(mu, 1), head start 0.
for (case in list(c(0.5, 4, 0), c(0.5, 5, 0), c(0.5, 4, 1), c(0.25, 8, 0), c(1, 2.5, 0))) {
  cat(sprintf("xcusum k=%g h=%g mu=%g arl=%.6f\n", case[1], case[2], case[3],
              xcusum.arl(k = case[1], h = case[2], mu = case[3])))
}
# Two-sided EWMA Z_t = l X_t + (1 - l) Z_{t-1}, Z_0 = 0, limits +/- c sqrt(l / (2 - l)) (fix) or
# +/- c sqrt(l / (2 - l) (1 - (1 - l)^(2t))) (vacl).
for (case in list(c(0.1, 2.7, 0), c(0.1, 2.7, 0.5), c(0.2, 2.86, 0), c(0.05, 2.6, 0))) {
  for (lim in c("fix", "vacl")) {
    cat(sprintf("xewma l=%g c=%g mu=%g limits=%s arl=%.6f\n", case[1], case[2], case[3], lim,
                xewma.arl(l = case[1], c = case[2], mu = case[3], sided = "two", limits = lim)))
  }
}

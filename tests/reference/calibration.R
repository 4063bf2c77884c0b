# Reference values for tests/unit/test_calibration.py: maximum-likelihood logistic and
# linear fits, c-statistic and calibration of a fixed model, computed with base R.
# Run from the repository root:  Rscript tests/reference/calibration.R
# It (re)writes tests/reference/calibration_data.csv and prints the values the test pins.
set.seed(20261125)
n <- 400
age <- round(rnorm(n, 70, 10), 1)
male <- rbinom(n, 1, 0.55)
lab <- round(rlnorm(n, log(100), 0.4), 2)
lab[sample(n, 40)] <- NA                      # missing values: take the reference (mean)
eta <- -1.5 + 0.04 * (age - 70) + 0.5 * male + 0.8 * log(lab / 100)
eta[is.na(eta)] <- (-1.5 + 0.04 * (age - 70) + 0.5 * male)[is.na(eta)]
y <- rbinom(n, 1, plogis(eta))
los <- round(5 + 0.05 * (age - 70) + 1.0 * male + rnorm(n, 0, 2), 3)
write.csv(data.frame(age, male, lab, y, los), "tests/reference/calibration_data.csv", row.names = FALSE,
          na = "")

# Fits as rwe calibrate does them: covariates centred on their mean, a missing value = the mean.
ref <- c(mean(age), mean(male), mean(lab, na.rm = TRUE))
lab_c <- lab - ref[3]; lab_c[is.na(lab_c)] <- 0
age_c <- age - ref[1]; male_c <- male - ref[2]
logistic <- glm(y ~ age_c + male_c + lab_c, family = binomial)
linear <- lm(los ~ age_c + male_c)
cat("reference", sprintf("%.15g", ref), "\n")
cat("logistic", sprintf("%.15g", coef(logistic)), "\n")
cat("linear", sprintf("%.15g", coef(linear)), "\n")

# A fixed (miscalibrated) model: intercept -1.2, age 0.06, male 0.31, lab 0 (centred on ref).
# (male 0.3 would tie lp exactly at age differences of 5 years, where float rounding decides ties.)
lp <- -1.2 + 0.06 * age_c + 0.31 * male_c
p <- plogis(lp)
auc <- wilcox.test(p[y == 1], p[y == 0], exact = FALSE)$statistic / (sum(y) * sum(1 - y))
citl <- coef(glm(y ~ offset(lp), family = binomial))[1]
slope <- coef(glm(y ~ lp, family = binomial))[2]
cat("fixed", sprintf("%.15g", c(sum(y), sum(p), sum(y) / sum(p), auc, citl, slope)), "\n")

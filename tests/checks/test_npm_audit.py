"""The npm audit check's reading of `npm audit --json` (checks/npm_audit.py), on
recorded answers: a report with advisories, a clean one, and a registry that does
not serve the audit endpoint (as the one these machines reach)."""

from typing import Any

from checks.npm_audit import advisories, no_answer

# `npm audit --package-lock-only --json` (npm 11, report version 2), trimmed to the
# fields the check reads.
REPORT: dict[str, Any] = {
    "auditReportVersion": 2,
    "vulnerabilities": {
        "esbuild": {
            "name": "esbuild",
            "severity": "moderate",
            "isDirect": True,
            "via": [
                {
                    "source": 1102341,
                    "name": "esbuild",
                    "title": "esbuild enables any website to send any requests to the "
                    "development server and read the response",
                    "url": "https://github.com/advisories/GHSA-67mh-4wv8-2f99",
                    "severity": "moderate",
                    "range": "<=0.24.2",
                }
            ],
            "fixAvailable": True,
        },
        "vite": {"name": "vite", "severity": "moderate", "via": ["esbuild"], "fixAvailable": False},
    },
    "metadata": {"dependencies": {"prod": 3, "dev": 40, "total": 43}},
}
CLEAN: dict[str, Any] = {
    "auditReportVersion": 2,
    "vulnerabilities": {},
    "metadata": {"dependencies": {"total": 43}},
}
# What npm prints when the registry answers the bulk advisory endpoint with 405.
NO_ENDPOINT: dict[str, Any] = {
    "message": "405 Method Not Allowed - POST https://registry.npmjs.org/-/npm/v1/security/advisories/bulk",
    "method": "POST",
    "statusCode": 405,
    "error": {"summary": "", "detail": ""},
}


def test_each_vulnerable_package_is_one_line_with_its_advisory() -> None:
    assert advisories(REPORT) == [
        "esbuild (moderate, fix available): esbuild enables any website to send any "
        "requests to the development server and read the response",
        "vite (moderate, no fix yet): through esbuild",
    ]
    assert no_answer(REPORT) is None


def test_a_clean_report_has_no_advisory() -> None:
    assert advisories(CLEAN) == [] and no_answer(CLEAN) is None


def test_a_registry_without_the_audit_endpoint_is_no_answer() -> None:
    assert no_answer(NO_ENDPOINT) == NO_ENDPOINT["message"]
    assert no_answer({}) == "no audit report"

"""Run the emulator's unittest suite (tests/test_*.py) and print, last, one
line the test command reads:

    emulator: N passed, F failed, K skipped

Each test counts once: passed (every subtest passed), failed (a failure or
an error, in the test or any of its subtests, or in a class or module
set-up), or skipped (the reason is printed with it, e.g. a recording whose
licence keeps it out of the project when the shared fixtures are absent).
A skipped test is never counted as passed.  Exit status 0 when nothing
failed.

    python3 run_tests.py [-p PATTERN]      (from test/emulator)
"""
import argparse
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


class CountingResult(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.passed = 0
        self.failed_ids = set()

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.failed_ids.add(test.id())

    def addError(self, test, err):
        super().addError(test, err)
        self.failed_ids.add(test.id())

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self.failed_ids.add(test.id())

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.failed_ids.add(test.id())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-p", "--pattern", default="test*.py")
    args = ap.parse_args()
    tests_dir = os.path.join(HERE, "tests")
    suite = unittest.defaultTestLoader.discover(tests_dir, pattern=args.pattern,
                                                top_level_dir=tests_dir)
    runner = unittest.TextTestRunner(verbosity=2, resultclass=CountingResult,
                                     stream=sys.stdout)
    result = runner.run(suite)
    skipped = len(result.skipped)
    failed = len(result.failed_ids)
    if result.skipped:
        reasons = {}
        for _, reason in result.skipped:
            # one line per reason; the recording's name, in [...], varies
            reason = reason.split(" [")[0]
            reasons[reason] = reasons.get(reason, 0) + 1
        print("skipped (each is listed above with its recording):")
        for reason, n in sorted(reasons.items()):
            print("  %d %s" % (n, reason))
    print("emulator: %d passed, %d failed, %d skipped" % (result.passed, failed, skipped))
    sys.exit(0 if failed == 0 and result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()

"""Analyst report: ``detector report --alerts A [--events E] --out report.html`` (one static HTML page).

``detector.report.build`` makes the page; ``detector.report.svg`` draws the charts; ``detector.report.cli``
registers the command (imports nothing heavy, so ``detector --help`` stays fast).
"""

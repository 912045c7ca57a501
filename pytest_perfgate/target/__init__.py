"""The target: starting, probing and scraping the service under test.
"""

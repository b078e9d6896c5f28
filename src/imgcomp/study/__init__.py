"""A two-alternative forced-choice (2AFC) study of codecs, as in Patel et al. 2019 (sec. 4.3).

``create`` (reconstructions at matched rates, the definition), ``app`` (the rating web app),
``db`` (votes in any SQLAlchemy database), ``analyze`` (preferences, Bradley-Terry scales, plots,
CSV) and ``pilot`` (simulated raters driving the app over HTTP). Needs the ``study`` extra.
"""

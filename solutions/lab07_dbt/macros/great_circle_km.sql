-- Great-circle (haversine) distance in km between two points given in degrees; Earth radius 6371 km.
{% macro great_circle_km(lat1, lon1, lat2, lon2) %}
-- BEGIN SOLUTION (part C)
    (2 * 6371.0 * asin(least(1.0, sqrt(
        power(sin(radians({{ lat2 }} - {{ lat1 }}) / 2), 2)
        + cos(radians({{ lat1 }})) * cos(radians({{ lat2 }}))
          * power(sin(radians({{ lon2 }} - {{ lon1 }}) / 2), 2)
    ))))
-- END SOLUTION
{% endmacro %}

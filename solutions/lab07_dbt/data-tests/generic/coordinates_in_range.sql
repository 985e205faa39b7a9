-- Generic test: rows whose coordinate in `column_name` lies outside [min_value, max_value].
{% test coordinates_in_range(model, column_name, min_value, max_value) %}
-- BEGIN SOLUTION (part E)
select *
from {{ model }}
where {{ column_name }} < {{ min_value }}
   or {{ column_name }} > {{ max_value }}
-- END SOLUTION
{% endtest %}

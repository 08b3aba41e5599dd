"""Public blog pages: published posts only."""

from django.views.generic import DetailView, ListView

from .models import Post


class PostListView(ListView):
    template_name = "blog/post_list.html"
    context_object_name = "posts"
    paginate_by = 20

    def get_queryset(self):
        return Post.objects.filter(status=Post.Status.PUBLISHED).select_related("category")


class PostDetailView(DetailView):
    template_name = "blog/post_detail.html"
    context_object_name = "post"

    def get_queryset(self):
        return Post.objects.filter(status=Post.Status.PUBLISHED).select_related("category").prefetch_related("tags")

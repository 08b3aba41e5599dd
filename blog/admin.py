from django.contrib import admin
from django.utils.html import format_html

from dbs_admin.admin import HistoryAdminMixin

from .models import Attachment, Category, Post, Tag


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name"]


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name"]


@admin.register(Post)
class PostAdmin(HistoryAdminMixin, admin.ModelAdmin):
    list_display = ["title", "status", "category", "created_at", "updated_at"]
    list_filter = ["status", "editor_type", "category"]
    search_fields = ["title", "slug", "excerpt"]
    prepopulated_fields = {"slug": ["title"]}
    autocomplete_fields = ["category", "tags"]
    date_hierarchy = "created_at"
    readonly_fields = ["updated_at"]
    fieldsets = [
        (None, {"fields": ["title", "slug", "excerpt", "status", "category", "tags"]}),
        ("Content", {"fields": ["editor_type", "content_md", "content_html"]}),
        ("Dates", {"fields": ["created_at", "updated_at"]}),
    ]


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    list_display = ["image", "alt_text", "uploaded_at", "preview"]
    search_fields = ["image", "alt_text"]

    @admin.display(description="Preview")
    def preview(self, obj: Attachment) -> str:
        return format_html('<img src="{}" style="max-height:48px">', obj.image.url) if obj.image else ""
